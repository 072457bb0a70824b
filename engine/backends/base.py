"""The one interface the app uses for any model.

    backend.name                      # e.g. "builtin:small"
    backend.capabilities              # Capabilities(images=True, audio=True, context_length=1024)
    backend.sampling                  # Sampling(temperature=0.0, top_p=1.0), or None: the app's defaults
    for piece in backend.stream(conversation, GenerationConfig(), cancel=event, info=info):
        ...                           # text pieces; `info` (ReplyInfo) is filled as it goes

A stream stops early when `cancel` is set or when the caller closes the generator;
either way the backend frees what the reply held.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Iterator, Protocol, runtime_checkable

from engine.types import Conversation, GenerationConfig, ReplyInfo


@dataclass(frozen=True)
class Capabilities:
    images: bool
    audio: bool
    context_length: int


@dataclass(frozen=True)
class Sampling:
    """How a model's makers say to decode it (what Hugging Face's generation_config.json holds):
    the settings panel starts from these for that model."""

    temperature: float  # 0 = greedy
    top_p: float = 1.0


def sampling_of(backend) -> "Sampling | None":
    """The backend's own decoding defaults, or None when it has none (an optional attribute)."""
    return getattr(backend, "sampling", None)


@runtime_checkable
class Backend(Protocol):
    name: str
    capabilities: Capabilities

    def stream(self, conversation: Conversation, config: GenerationConfig = GenerationConfig(),
               cancel: threading.Event | None = None, info: ReplyInfo | None = None) -> Iterator[str]:
        """Yield the reply to the conversation's last user turn, piece by piece."""
        ...

"""The one interface the app uses for any model.

    backend.name                      # e.g. "builtin:small"
    backend.capabilities              # Capabilities(images=True, audio=True, context_length=1024)
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


@runtime_checkable
class Backend(Protocol):
    name: str
    capabilities: Capabilities

    def stream(self, conversation: Conversation, config: GenerationConfig = GenerationConfig(),
               cancel: threading.Event | None = None, info: ReplyInfo | None = None) -> Iterator[str]:
        """Yield the reply to the conversation's last user turn, piece by piece."""
        ...

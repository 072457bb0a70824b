"""The one interface the app uses for any model.

    backend.name                      # e.g. "builtin:small"
    backend.capabilities              # Capabilities(images=True, audio=True, context_length=1024)
    backend.sampling                  # Sampling(temperature=0.0, top_p=1.0), or None: the app's defaults
    info.finish_reason                # "stop" | "length" | "cancelled" (engine.types.FinishReason)
    for piece in backend.stream(conversation, GenerationConfig(), cancel=event, info=info):
        ...                           # text pieces; `info` (ReplyInfo) is filled as it goes

A stream stops early when `cancel` is set or when the caller closes the generator;
either way the backend frees what the reply held.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

from engine.types import Conversation, GenerationConfig, ReplyInfo


@dataclass(frozen=True)
class Capabilities:
    """What a backend's model takes. `audio` is True when it takes audio clips at all (itself, or
    through a transcriber); `transcribes_audio` when it also writes what was heard into its own
    prompt, so the app must not add the transcript as text a second time."""

    images: bool
    audio: bool
    context_length: int
    transcribes_audio: bool = False
    # pictures reach it as the offline tools' findings (text) although it does not see them
    describes_images: bool = False
    # replies it decodes at once as one batch (engine.scheduler); the app runs that many together
    parallel_replies: int = 1

    @property
    def takes_images(self) -> bool:
        """Whether a picture may be sent to it at all (seen, or described by the tools)."""
        return self.images or self.describes_images


@dataclass(frozen=True)
class Sampling:
    """How a model's makers say to decode it (what Hugging Face's generation_config.json holds):
    the settings panel starts from these for that model."""

    temperature: float  # 0 = greedy
    top_p: float = 1.0


@runtime_checkable
class Backend(Protocol):
    name: str
    capabilities: Capabilities
    sampling: Sampling | None  # the model's own decoding defaults; None: the app's

    def stream(
        self,
        conversation: Conversation,
        config: GenerationConfig = GenerationConfig(),
        cancel: threading.Event | None = None,
        info: ReplyInfo | None = None,
    ) -> Iterator[str]:
        """Yield the reply to the conversation's last user turn, piece by piece."""
        ...

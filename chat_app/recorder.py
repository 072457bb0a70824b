"""One streaming reply's record in the store, kept in one place.

    recorder = ReplyRecorder(store, user_key, conversation_id, "builtin", settings, warnings)
    recorder.begin(info)                  # at the first piece: the row, with what the model saw
    recorder.checkpoint(text)             # at most every `every_s`: kept if the server dies
    message = recorder.finish(text, "complete", info)    # once; the stored Message (None on failure)
    recorder.discard()                    # the engine refused the input: no reply is stored

The reply row appears with its first piece, so a reply refused before any text leaves
nothing behind; a stopped reply still gets a row (with what was shown, maybe nothing).
"""

from __future__ import annotations

import logging
import time

from chat_app.store import ConversationStore, Message, StoreError
from engine.types import ReplyInfo

log = logging.getLogger(__name__)


class ReplyRecorder:
    """Begin, checkpoint and finish one reply in the store."""

    def __init__(
        self,
        store: ConversationStore,
        user_key: str,
        conversation_id: str,
        model: str,
        settings: dict,
        warnings: tuple[str, ...] = (),
        every_s: float = 1.0,
    ) -> None:
        self.store, self.user_key, self.conversation_id = store, user_key, conversation_id
        self.model, self.settings, self.warnings, self.every_s = model, settings, warnings, every_s
        self.message_id: str | None = None
        self.finished = False
        self._last_checkpoint = time.monotonic()

    @property
    def begun(self) -> bool:
        return self.message_id is not None

    def begin(self, info: ReplyInfo) -> None:
        """Store the reply's row (status "streaming") with the report of what the model saw."""
        if self.begun:
            return
        report = {
            "observations": list(info.observations),
            "prompt_tokens": info.prompt_tokens,
            "dropped_turns": info.dropped_turns,
            "first_token_ms": round((info.time_to_first_token_s or 0.0) * 1000, 1),
        }
        if self.warnings:
            report["warnings"] = list(self.warnings)
        self.message_id = self.store.begin_reply(
            self.user_key, self.conversation_id, model=self.model, settings=dict(self.settings, report=report)
        )

    def checkpoint(self, text: str, now: float | None = None) -> None:
        """Save the text shown so far, if `every_s` has passed since the last save."""
        now = time.monotonic() if now is None else now
        if self.begun and now - self._last_checkpoint >= self.every_s:
            self.store.update_reply(self.user_key, self.message_id, text)
            self._last_checkpoint = now

    def finish(self, text: str, status: str, info: ReplyInfo) -> Message | None:
        """Store how the reply ended (once): its text, status, latency and token count."""
        if self.finished:
            return None
        self.finished = True
        try:
            self.begin(info)
            return self.store.finish_reply(
                self.user_key,
                self.message_id,
                text,
                status,
                latency_ms=round(info.total_time_s * 1000, 1) if info.total_time_s else None,
                tokens=info.new_tokens,
            )
        except StoreError:
            log.exception("could not store the end of a reply")
            return None

    def discard(self) -> None:
        """Nothing is stored for a reply the engine refused before its first piece."""
        self.finished = True

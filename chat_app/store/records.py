"""Plain, frozen records the store hands out; no database objects leak past the store.

Timestamps are float UNIX seconds (like `engine.types.Turn.created`). Public ids are random
32-character hex strings (uuid4), never sequential. `settings` fields are JSON-decoded dicts.

    User                 key, created
    Attachment           id, kind ("image" | "audio"), mime, size, sha256, created, removed
    Message              id, conversation_id, role, text, transcript, status, model, settings,
                         latency_ms, tokens, feedback, created, attachments
    ConversationSummary  id, title, model, created, updated, message_count
    Conversation         id, title, model, settings, created, updated, messages
    SearchHit            conversation_id, conversation_title, message_id, role, snippet,
                         score (higher is better), created
    ImportResult         conversations (new ids), duplicates (ids of the existing copies),
                         messages, attachments
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

Role = Literal["system", "user", "assistant"]
Status = Literal["streaming", "complete", "interrupted", "error"]
Kind = Literal["image", "audio"]
Feedback = Literal["like", "dislike"]

ROLES = ("system", "user", "assistant")
FINAL_STATUSES = ("complete", "interrupted", "error")  # how a message may end
STATUSES = ("streaming",) + FINAL_STATUSES
KINDS = ("image", "audio")
FEEDBACK = ("like", "dislike")


@dataclass(frozen=True)
class User:
    key: str  # the auth username or per-browser id the app identifies people by
    created: float


@dataclass(frozen=True)
class Attachment:
    id: str
    kind: Kind
    mime: str  # sniffed from the bytes, never taken from the uploader
    size: int  # bytes
    sha256: str  # hex digest; the blob's name on disk
    created: float
    removed: bool = False  # True once retention dropped the bytes (the record stays)


@dataclass(frozen=True)
class Message:
    id: str
    conversation_id: str
    role: Role
    text: str
    transcript: str | None  # what ASR heard in the message's audio, if any
    status: Status
    model: str | None  # which model wrote it (assistant messages)
    settings: dict[str, Any] | None  # generation settings used for it
    latency_ms: float | None
    tokens: int | None
    feedback: Feedback | None
    created: float
    attachments: tuple[Attachment, ...] = ()


@dataclass(frozen=True)
class ConversationSummary:
    id: str
    title: str  # "" until the first user message gives it one (or rename())
    model: str | None
    created: float
    updated: float
    message_count: int


@dataclass(frozen=True)
class Conversation:
    id: str
    title: str
    model: str | None
    settings: dict[str, Any]
    created: float
    updated: float
    messages: tuple[Message, ...] = field(default=())


@dataclass(frozen=True)
class SearchHit:
    conversation_id: str
    conversation_title: str
    message_id: str
    role: Role
    snippet: str  # a short excerpt with the matched terms wrapped in the highlight markers
    score: float  # -bm25: higher means a better match
    created: float


@dataclass(frozen=True)
class ImportResult:
    conversations: tuple[str, ...]  # ids of the conversations created, in file order
    duplicates: tuple[str, ...]  # for each skipped conversation: the id of the copy kept
    messages: int
    attachments: int

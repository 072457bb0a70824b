"""Small helpers shared by the store's modules: ids, argument checks, owned-row lookups,
and turning rows into records. Every lookup here is scoped by the user's key; a row that
belongs to someone else raises the same NotFound as one that does not exist.
"""

from __future__ import annotations

import dataclasses
import json
import sqlite3
import time
import uuid
from collections.abc import Mapping
from typing import Any

from chat_app.store.errors import InvalidInput, NotFound
from chat_app.store.records import Attachment, Conversation, Message

MAX_USER_KEY_CHARS = 256
MAX_TITLE_CHARS = 200
AUTO_TITLE_CHARS = 60


def new_id() -> str:
    """A random public id: 32 hex characters, not guessable, not sequential."""
    return uuid.uuid4().hex


def now() -> float:
    return time.time()


def check_user_key(user_key: object) -> str:
    if not isinstance(user_key, str) or not user_key.strip():
        raise InvalidInput("A user key must be a non-empty string.")
    if len(user_key) > MAX_USER_KEY_CHARS:
        raise InvalidInput(f"A user key may be at most {MAX_USER_KEY_CHARS} characters long.")
    return user_key


def check_text(value: object, what: str, limit: int, optional: bool = False) -> str | None:
    if value is None and optional:
        return None
    if not isinstance(value, str):
        raise InvalidInput(f"The {what} must be a string, not {type(value).__name__}.")
    if len(value) > limit:
        raise InvalidInput(f"The {what} is {len(value):,} characters long; the limit is {limit:,}.")
    return value


def check_choice(value: object, what: str, choices: tuple[str, ...]) -> str:
    if value not in choices:
        raise InvalidInput(f"Unknown {what} {value!r}: use one of {', '.join(choices)}.")
    return value  # type: ignore[return-value]


def check_number(value: object, what: str, optional: bool = True) -> None:
    if value is None and optional:
        return
    if not isinstance(value, (int, float)) or isinstance(value, bool) or not 0 <= value < float("inf"):
        raise InvalidInput(f"The {what} must be a number of at least 0.")


def clean_title(title: object) -> str:
    if not isinstance(title, str) or not " ".join(title.split()):
        raise InvalidInput("A title must be a non-empty string.")
    title = " ".join(title.split())
    if len(title) > MAX_TITLE_CHARS:
        raise InvalidInput(f"A title may be at most {MAX_TITLE_CHARS} characters long.")
    return title


def auto_title(text: str | None, fallback: str) -> str:
    """A conversation's title from its first user message: one line, trimmed to 60 chars."""
    words = " ".join((text or "").split())
    if not words:
        return fallback
    if len(words) <= AUTO_TITLE_CHARS:
        return words
    return words[: AUTO_TITLE_CHARS - 1].rsplit(" ", 1)[0].rstrip(" ,.;:") + "…"


def to_json(settings: object, what: str = "settings") -> str | None:
    """Settings (a mapping or a dataclass such as GenerationConfig) as JSON text."""
    if settings is None:
        return None
    if dataclasses.is_dataclass(settings) and not isinstance(settings, type):
        settings = dataclasses.asdict(settings)
    if not isinstance(settings, Mapping):
        raise InvalidInput(f"The {what} must be a mapping or a dataclass, not {type(settings).__name__}.")
    try:
        return json.dumps(dict(settings), sort_keys=True, allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise InvalidInput(f"The {what} cannot be saved as JSON ({exc}).") from exc


def from_json(text: str | None) -> dict[str, Any] | None:
    return None if text is None else json.loads(text)


# ----------------------------------------------------------------------------- lookups


def user_id(conn: sqlite3.Connection, user_key: str, create: bool = False) -> int | None:
    if create:
        conn.execute("INSERT OR IGNORE INTO users (user_key, created) VALUES (?, ?)", (user_key, now()))
    row = conn.execute("SELECT id FROM users WHERE user_key = ?", (user_key,)).fetchone()
    return row[0] if row else None


def owned_conversation(conn: sqlite3.Connection, user_key: str, public_id: object) -> sqlite3.Row:
    row = conn.execute(
        "SELECT c.* FROM conversations c JOIN users u ON u.id = c.user_id WHERE c.public_id = ? AND u.user_key = ?",
        (str(public_id), user_key),
    ).fetchone()
    if row is None:
        raise NotFound("conversation", public_id)
    return row


def owned_message(conn: sqlite3.Connection, user_key: str, public_id: object) -> sqlite3.Row:
    row = conn.execute(
        "SELECT m.*, c.public_id AS conversation_public_id FROM messages m "
        "JOIN conversations c ON c.id = m.conversation_id JOIN users u ON u.id = c.user_id "
        "WHERE m.public_id = ? AND u.user_key = ?",
        (str(public_id), user_key),
    ).fetchone()
    if row is None:
        raise NotFound("message", public_id)
    return row


def owned_attachment(conn: sqlite3.Connection, user_key: str, public_id: object) -> sqlite3.Row:
    row = conn.execute(
        "SELECT a.* FROM attachments a JOIN messages m ON m.id = a.message_id "
        "JOIN conversations c ON c.id = m.conversation_id JOIN users u ON u.id = c.user_id "
        "WHERE a.public_id = ? AND u.user_key = ?",
        (str(public_id), user_key),
    ).fetchone()
    if row is None:
        raise NotFound("attachment", public_id)
    return row


# ----------------------------------------------------------------------------- records


def attachment_record(row: sqlite3.Row) -> Attachment:
    return Attachment(
        id=row["public_id"],
        kind=row["kind"],
        mime=row["mime"],
        size=row["size"],
        sha256=row["sha256"],
        created=row["created"],
        removed=row["removed"] is not None,
    )


def message_record(row: sqlite3.Row, conversation_public_id: str, attachments: tuple[Attachment, ...] = ()) -> Message:
    return Message(
        id=row["public_id"],
        conversation_id=conversation_public_id,
        role=row["role"],
        text=row["text"],
        transcript=row["transcript"],
        status=row["status"],
        model=row["model"],
        settings=from_json(row["settings"]),
        latency_ms=row["latency_ms"],
        tokens=row["tokens"],
        feedback=row["feedback"],
        created=row["created"],
        attachments=attachments,
    )


def messages_of(conn: sqlite3.Connection, conversation: sqlite3.Row) -> tuple[Message, ...]:
    """Every message of a conversation row, in order, with its attachments."""
    attachments: dict[int, list[Attachment]] = {}
    for row in conn.execute(
        "SELECT a.* FROM attachments a JOIN messages m ON m.id = a.message_id "
        "WHERE m.conversation_id = ? ORDER BY a.message_id, a.position",
        (conversation["id"],),
    ):
        attachments.setdefault(row["message_id"], []).append(attachment_record(row))
    rows = conn.execute("SELECT * FROM messages WHERE conversation_id = ? ORDER BY position", (conversation["id"],))
    return tuple(message_record(row, conversation["public_id"], tuple(attachments.get(row["id"], ()))) for row in rows)


def conversation_record(conn: sqlite3.Connection, row: sqlite3.Row) -> Conversation:
    return Conversation(
        id=row["public_id"],
        title=row["title"],
        model=row["model"],
        settings=from_json(row["settings"]) or {},
        created=row["created"],
        updated=row["updated"],
        messages=messages_of(conn, row),
    )

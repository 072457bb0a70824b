"""The export format's manifest.json: written from records, read back with full validation.

    {"format": "multimodal-chat-export", "version": 1, "exported_at": 1767225600.0,
     "conversations": [
       {"id", "title", "model", "settings": {...}, "created", "updated",
        "messages": [
          {"id", "role", "text", "transcript", "status", "model", "settings": {...} | null,
           "latency_ms", "tokens", "feedback", "created",
           "attachments": [{"kind", "mime", "size", "sha256", "created", "removed",
                            "file": "media/<sha256>" | null}]}]}]}

Times are UNIX seconds. Each attachment's bytes are the zip member `media/<sha256>`;
`file` is null when retention had dropped them. Reading (`parse_manifest`) checks every field
and returns plain dicts holding only what the store will insert; anything wrong raises
ImportRejected naming the place. `content_hash` identifies a conversation by what was said
and shown, to recognise one that was already imported.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Iterable
from typing import Any, NoReturn

from chat_app.store.errors import ImportRejected
from chat_app.store.media import SHA256_RE
from chat_app.store.records import FEEDBACK, KINDS, ROLES, STATUSES, Attachment, Conversation, Message
from chat_app.store.rows import MAX_TITLE_CHARS

FORMAT = "multimodal-chat-export"
VERSION = 1


def media_name(sha256: str) -> str:
    return f"media/{sha256}"


def _attachment_dict(item: Attachment, available: set[str]) -> dict[str, Any]:
    present = not item.removed and item.sha256 in available
    return {
        "kind": item.kind,
        "mime": item.mime,
        "size": item.size,
        "sha256": item.sha256,
        "created": item.created,
        "removed": not present,
        "file": media_name(item.sha256) if present else None,
    }


def _message_dict(message: Message, available: set[str]) -> dict[str, Any]:
    return {
        "id": message.id,
        "role": message.role,
        "text": message.text,
        "transcript": message.transcript,
        "status": message.status,
        "model": message.model,
        "settings": message.settings,
        "latency_ms": message.latency_ms,
        "tokens": message.tokens,
        "feedback": message.feedback,
        "created": message.created,
        "attachments": [_attachment_dict(a, available) for a in message.attachments],
    }


def build_manifest(conversations: list[Conversation], available: set[str], exported_at: float) -> dict[str, Any]:
    """The manifest for these conversations; `available` are the blobs written to the zip."""
    return {
        "format": FORMAT,
        "version": VERSION,
        "exported_at": exported_at,
        "conversations": [
            {
                "id": c.id,
                "title": c.title,
                "model": c.model,
                "settings": c.settings,
                "created": c.created,
                "updated": c.updated,
                "messages": [_message_dict(m, available) for m in c.messages],
            }
            for c in conversations
        ],
    }


def content_hash(messages: Iterable[tuple[str, str, str | None, Iterable[str]]]) -> str:
    """sha256 over (role, text, transcript, attachment hashes) of every message, in order."""
    canonical = [[role, text, transcript or "", list(shas)] for role, text, transcript, shas in messages]
    return hashlib.sha256(json.dumps(canonical, ensure_ascii=False, separators=(",", ":")).encode()).hexdigest()


# ----------------------------------------------------------------------------- reading


class _Checker:
    """Field checks that raise ImportRejected naming where in the manifest they failed."""

    def __init__(self, max_text_chars: int) -> None:
        self.max_text_chars = max_text_chars

    def fail(self, where: str, problem: str) -> NoReturn:
        raise ImportRejected(f"in manifest.json, {where} {problem}.")

    def obj(self, value: object, where: str) -> dict:
        if not isinstance(value, dict):
            self.fail(where, "must be an object")
        return value  # type: ignore[return-value]

    def list(self, value: object, where: str) -> list:
        if not isinstance(value, list):
            self.fail(where, "must be a list")
        return value  # type: ignore[return-value]

    def text(self, value: object, where: str, optional: bool = False, limit: int | None = None) -> str | None:
        if value is None and optional:
            return None
        if not isinstance(value, str):
            self.fail(where, "must be a string")
        if len(value) > (limit or self.max_text_chars):  # type: ignore[arg-type]
            self.fail(where, "is too long")
        return value  # type: ignore[return-value]

    def number(self, value: object, where: str, optional: bool = False, integer: bool = False) -> float | None:
        if value is None and optional:
            return None
        kinds = (int,) if integer else (int, float)
        if not isinstance(value, kinds) or isinstance(value, bool) or not math.isfinite(value) or value < 0:  # type: ignore[operator, arg-type]
            self.fail(where, "must be a number of at least 0")
        return value  # type: ignore[return-value]

    def choice(self, value: object, where: str, choices: tuple, optional: bool = False):
        if value is None and optional:
            return None
        if value not in choices:
            self.fail(where, f"must be one of {', '.join(choices)}")
        return value

    def settings(self, value: object, where: str, optional: bool) -> str | None:
        if value is None and optional:
            return None
        return json.dumps(self.obj(value, where), sort_keys=True)


def _attachment(check: _Checker, value: object, where: str) -> dict[str, Any]:
    item = check.obj(value, where)
    sha = check.text(item.get("sha256"), f"{where}.sha256", limit=64)
    if not SHA256_RE.fullmatch(sha):  # type: ignore[arg-type]
        check.fail(f"{where}.sha256", "must be 64 lowercase hex digits")
    removed = item.get("removed", False)
    if not isinstance(removed, bool):
        check.fail(f"{where}.removed", "must be true or false")
    if not removed and item.get("file") != media_name(sha):  # type: ignore[arg-type]
        check.fail(f"{where}.file", f"must be {media_name(sha)!r}")  # type: ignore[arg-type]
    return {
        "kind": check.choice(item.get("kind"), f"{where}.kind", KINDS),
        "mime": check.text(item.get("mime"), f"{where}.mime", limit=100),
        "size": check.number(item.get("size"), f"{where}.size", integer=True),
        "sha256": sha,
        "removed": removed,
        "created": check.number(item.get("created"), f"{where}.created"),
    }


def _message(check: _Checker, value: object, where: str) -> dict[str, Any]:
    item = check.obj(value, where)
    status = check.choice(item.get("status", "complete"), f"{where}.status", STATUSES)
    return {
        "role": check.choice(item.get("role"), f"{where}.role", ROLES),
        "text": check.text(item.get("text", ""), f"{where}.text"),
        "transcript": check.text(item.get("transcript"), f"{where}.transcript", optional=True),
        "status": "interrupted" if status == "streaming" else status,
        "model": check.text(item.get("model"), f"{where}.model", optional=True, limit=500),
        "settings": check.settings(item.get("settings"), f"{where}.settings", optional=True),
        "latency_ms": check.number(item.get("latency_ms"), f"{where}.latency_ms", optional=True),
        "tokens": check.number(item.get("tokens"), f"{where}.tokens", optional=True, integer=True),
        "feedback": check.choice(item.get("feedback"), f"{where}.feedback", FEEDBACK, optional=True),
        "created": check.number(item.get("created"), f"{where}.created"),
        "attachments": [
            _attachment(check, a, f"{where}.attachments[{i}]")
            for i, a in enumerate(check.list(item.get("attachments", []), f"{where}.attachments"))
        ],
    }


def _conversation(check: _Checker, value: object, where: str) -> dict[str, Any]:
    item = check.obj(value, where)
    title = check.text(item.get("title", ""), f"{where}.title", limit=MAX_TITLE_CHARS)
    messages = [
        _message(check, m, f"{where}.messages[{i}]")
        for i, m in enumerate(check.list(item.get("messages"), f"{where}.messages"))
    ]
    created = check.number(item.get("created"), f"{where}.created")
    return {
        "title": " ".join(title.split()),  # type: ignore[union-attr]
        "model": check.text(item.get("model"), f"{where}.model", optional=True, limit=500),
        "settings": check.settings(item.get("settings", {}), f"{where}.settings", False),
        "created": created,
        "updated": check.number(item.get("updated", created), f"{where}.updated"),
        "messages": messages,
        "hash": content_hash(
            (m["role"], m["text"], m["transcript"], [a["sha256"] for a in m["attachments"]]) for m in messages
        ),
    }


def parse_manifest(raw: bytes, max_text_chars: int) -> list[dict[str, Any]]:
    """The validated conversations of a manifest.json; ImportRejected on any problem."""
    try:
        manifest = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError):
        raise ImportRejected("manifest.json is not valid JSON.") from None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise ImportRejected(f'it is not an export of this app (manifest.json must say "format": "{FORMAT}").')
    version = manifest.get("version")
    if isinstance(version, int) and not isinstance(version, bool) and version > VERSION:
        raise ImportRejected(
            f"it was made by a newer version of the app (export format "
            f"version {version}; this one reads version {VERSION})."
        )
    if version != VERSION or isinstance(version, bool):
        raise ImportRejected(f"its export format version {version!r} is unknown (this app reads version {VERSION}).")
    check = _Checker(max_text_chars)
    return [
        _conversation(check, c, f"conversations[{i}]")
        for i, c in enumerate(check.list(manifest.get("conversations"), "conversations"))
    ]

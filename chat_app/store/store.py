"""ConversationStore: durable, per-user chat history with its images and audio.

Every public method takes the user's key first and only ever sees that user's rows: an id
owned by someone else raises the same NotFound as an id that does not exist. Writes are
committed (synchronous=FULL) before the method returns, so a turn reported done survives a
crash. Opening the store marks replies left "streaming" by a killed server "interrupted".
The API is listed in `chat_app/store/__init__.py`.
"""

from __future__ import annotations

import os
import sqlite3
from collections.abc import Iterable
from pathlib import Path
from typing import BinaryIO

from chat_app.store import retention, rows, transfer
from chat_app.store import search as fts
from chat_app.store.database import Database
from chat_app.store.errors import AttachmentRejected, InvalidInput, MediaRemoved, NotFound
from chat_app.store.limits import Limits
from chat_app.store.media import Blobs, MediaSource, read_source, sniff_mime
from chat_app.store.migrations import migrate
from chat_app.store.records import (
    FEEDBACK,
    FINAL_STATUSES,
    ROLES,
    Conversation,
    ConversationSummary,
    ImportResult,
    Message,
    SearchHit,
    User,
)

NewAttachment = tuple[str, str | None, MediaSource]  # (kind, mime or None, bytes or a path)

_SUMMARY_SQL = """
SELECT c.*, (SELECT count(*) FROM messages m WHERE m.conversation_id = c.id) AS message_count
FROM conversations c JOIN users u ON u.id = c.user_id
WHERE u.user_key = ? ORDER BY c.updated DESC, c.id DESC LIMIT ? OFFSET ?
"""


def _summary(row: sqlite3.Row, message_count: int) -> ConversationSummary:
    return ConversationSummary(
        id=row["public_id"],
        title=row["title"],
        model=row["model"],
        created=row["created"],
        updated=row["updated"],
        message_count=message_count,
    )


class ConversationStore:
    """Users, conversations, messages and attachments in SQLite + content-addressed files."""

    def __init__(
        self,
        data_dir: str | os.PathLike,
        database_url: str | None = None,
        *,
        limits: Limits = Limits(),
        recover: bool = True,
    ) -> None:
        """Open (creating and migrating as needed) the store kept in `data_dir`.

        `database_url` defaults to sqlite:///<data_dir>/chat.db; media go to <data_dir>/media.
        With `recover` (the default; turn it off when several processes share one database),
        replies a killed process left "streaming" are marked "interrupted", text kept.
        Raises SchemaTooNew, leaving the file untouched, for a database from newer code.
        """
        self.data_dir = Path(data_dir).resolve()
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.limits = limits
        self.db = Database(database_url or self.data_dir / "chat.db")
        try:
            self.schema_version = migrate(self.db)
        except BaseException:
            self.db.close()
            raise
        self.blobs = Blobs(self.data_dir / "media")
        self.recovered = self._recover() if recover else 0

    def _recover(self) -> int:
        with self.db.write() as conn:
            return conn.execute("UPDATE messages SET status = 'interrupted' WHERE status = 'streaming'").rowcount

    def close(self) -> None:
        self.db.close()

    def __enter__(self) -> ConversationStore:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # ------------------------------------------------------------------------- users

    def ensure_user(self, user_key: str) -> User:
        """The user with this key, created on first use."""
        rows.check_user_key(user_key)
        with self.db.write() as conn:
            rows.user_id(conn, user_key, create=True)
            row = conn.execute("SELECT * FROM users WHERE user_key = ?", (user_key,)).fetchone()
        return User(key=row["user_key"], created=row["created"])

    # ------------------------------------------------------------------------- conversations

    def create_conversation(
        self, user_key: str, title: str | None = None, model: str | None = None, settings: object = None
    ) -> ConversationSummary:
        """A new, empty conversation; without a title, the first user message names it."""
        rows.check_user_key(user_key)
        title = "" if title is None else rows.clean_title(title)
        model = rows.check_text(model, "model name", 500, optional=True)
        settings_json = rows.to_json(settings) or "{}"
        public_id, now = rows.new_id(), rows.now()
        with self.db.write() as conn:
            uid = rows.user_id(conn, user_key, create=True)
            conn.execute(
                "INSERT INTO conversations (public_id, user_id, title, model, settings, "
                "created, updated) VALUES (?, ?, ?, ?, ?, ?, ?)",
                (public_id, uid, title, model, settings_json, now, now),
            )
            row = rows.owned_conversation(conn, user_key, public_id)
        return _summary(row, 0)

    def list_conversations(self, user_key: str, limit: int = 100, offset: int = 0) -> list[ConversationSummary]:
        """The user's conversations, most recently updated first."""
        with self.db.read() as conn:
            found = conn.execute(_SUMMARY_SQL, (user_key, limit, offset)).fetchall()
        return [_summary(row, row["message_count"]) for row in found]

    def get_conversation(self, user_key: str, conversation_id: str) -> Conversation:
        """One conversation with all its messages and attachments (records, not bytes)."""
        with self.db.read() as conn:
            row = rows.owned_conversation(conn, user_key, conversation_id)
            return rows.conversation_record(conn, row)

    def rename_conversation(self, user_key: str, conversation_id: str, title: str) -> None:
        title = rows.clean_title(title)
        with self.db.write() as conn:
            row = rows.owned_conversation(conn, user_key, conversation_id)
            conn.execute("UPDATE conversations SET title = ?, updated = ? WHERE id = ?", (title, rows.now(), row["id"]))

    def delete_conversation(self, user_key: str, conversation_id: str) -> None:
        """Delete a conversation, its messages and the media no one else uses."""
        with self.db.write() as conn:
            row = rows.owned_conversation(conn, user_key, conversation_id)
            shas = retention.shas_under(conn, "c.id = ?", (row["id"],))
            conn.execute("DELETE FROM conversations WHERE id = ?", (row["id"],))
        retention.collect_blobs(self.db, self.blobs, shas)

    # ------------------------------------------------------------------------- messages

    def _prepare(self, attachments: Iterable[NewAttachment]) -> list[tuple[str, str, bytes]]:
        prepared = []
        for item in attachments:
            if not isinstance(item, (tuple, list)) or len(item) != 3:
                raise AttachmentRejected("Each attachment must be a (kind, mime, data) tuple.")
            kind, mime, source = item
            data = read_source(source, self.limits.max_attachment_bytes)
            prepared.append((kind, sniff_mime(kind, data, mime), data))
        return prepared

    def _insert_attachments(
        self, conn: sqlite3.Connection, message_rowid: int, prepared: list[tuple[str, str, bytes]]
    ) -> None:
        created: list[str] = []
        try:
            for position, (kind, mime, data) in enumerate(prepared):
                sha, new = self.blobs.put(data)
                if new:
                    created.append(sha)
                conn.execute(
                    "INSERT INTO attachments (public_id, message_id, position, kind, "
                    "mime, size, sha256, created) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                    (rows.new_id(), message_rowid, position, kind, mime, len(data), sha, rows.now()),
                )
        except BaseException:
            for sha in created:  # still inside the transaction: no one else can use them yet
                self.blobs.delete(sha)
            raise

    def _insert_message(self, conn: sqlite3.Connection, conversation: sqlite3.Row, values: dict) -> int:
        position = conn.execute(
            "SELECT coalesce(max(position), -1) + 1 FROM messages WHERE conversation_id = ?", (conversation["id"],)
        ).fetchone()[0]
        values = dict(
            values, public_id=rows.new_id(), conversation_id=conversation["id"], position=position, created=rows.now()
        )
        cursor = conn.execute(
            f"INSERT INTO messages ({', '.join(values)}) VALUES ({', '.join('?' * len(values))})",
            tuple(values.values()),
        )
        conn.execute("UPDATE conversations SET updated = ? WHERE id = ?", (values["created"], conversation["id"]))
        return cursor.lastrowid

    def append_message(
        self,
        user_key: str,
        conversation_id: str,
        role: str,
        text: str = "",
        *,
        transcript: str | None = None,
        attachments: Iterable[NewAttachment] = (),
        status: str = "complete",
        model: str | None = None,
        settings: object = None,
    ) -> Message:
        """Add a finished message; attachments are (kind, mime or None, bytes or path).

        The first user message of an untitled conversation gives it its title.
        """
        rows.check_choice(role, "role", ROLES)
        rows.check_choice(status, "status", FINAL_STATUSES)
        rows.check_text(text, "message text", self.limits.max_text_chars)
        rows.check_text(transcript, "transcript", self.limits.max_text_chars, optional=True)
        rows.check_text(model, "model name", 500, optional=True)
        values = dict(
            role=role, text=text, transcript=transcript, status=status, model=model, settings=rows.to_json(settings)
        )
        prepared = self._prepare(attachments)
        with self.db.write() as conn:
            conversation = rows.owned_conversation(conn, user_key, conversation_id)
            rowid = self._insert_message(conn, conversation, values)
            self._insert_attachments(conn, rowid, prepared)
            if role == "user" and not conversation["title"]:
                fallback = {"image": "Image", "audio": "Voice message"}.get(
                    prepared[0][0] if prepared else "", "New conversation"
                )
                conn.execute(
                    "UPDATE conversations SET title = ? WHERE id = ?",
                    (rows.auto_title(text or transcript, fallback), conversation["id"]),
                )
            return self._message(conn, user_key, rowid)

    def _message(self, conn: sqlite3.Connection, user_key: str, rowid: int) -> Message:
        public_id = conn.execute("SELECT public_id FROM messages WHERE id = ?", (rowid,)).fetchone()[0]
        row = rows.owned_message(conn, user_key, public_id)
        attachments = tuple(
            rows.attachment_record(a)
            for a in conn.execute("SELECT * FROM attachments WHERE message_id = ? ORDER BY position", (rowid,))
        )
        return rows.message_record(row, row["conversation_public_id"], attachments)

    def get_message(self, user_key: str, message_id: str) -> Message:
        with self.db.read() as conn:
            return self._message(conn, user_key, rows.owned_message(conn, user_key, message_id)["id"])

    def begin_reply(
        self, user_key: str, conversation_id: str, model: str | None = None, settings: object = None
    ) -> str:
        """Start an assistant reply (status "streaming", empty text); returns its message id.

        Model and settings default to the conversation's.
        """
        rows.check_text(model, "model name", 500, optional=True)
        settings_json = rows.to_json(settings)
        with self.db.write() as conn:
            conversation = rows.owned_conversation(conn, user_key, conversation_id)
            rowid = self._insert_message(
                conn,
                conversation,
                dict(
                    role="assistant",
                    text="",
                    status="streaming",
                    model=model if model is not None else conversation["model"],
                    settings=settings_json if settings_json is not None else conversation["settings"],
                ),
            )
            return conn.execute("SELECT public_id FROM messages WHERE id = ?", (rowid,)).fetchone()[0]

    def _streaming(self, conn: sqlite3.Connection, user_key: str, message_id: str) -> sqlite3.Row:
        row = rows.owned_message(conn, user_key, message_id)
        if row["status"] != "streaming":
            raise InvalidInput(f"The reply {message_id!r} has already ended (status {row['status']!r}).")
        return row

    def update_reply(self, user_key: str, message_id: str, text: str) -> None:
        """Checkpoint a streaming reply's partial text (kept if the server dies).

        Each call is a durable commit and re-indexes the text: call it every second or
        so, not once per token.
        """
        rows.check_text(text, "reply text", self.limits.max_text_chars)
        with self.db.write() as conn:
            row = self._streaming(conn, user_key, message_id)
            conn.execute("UPDATE messages SET text = ? WHERE id = ?", (text, row["id"]))

    def finish_reply(
        self,
        user_key: str,
        message_id: str,
        text: str,
        status: str = "complete",
        *,
        latency_ms: float | None = None,
        tokens: int | None = None,
        attachments: Iterable[NewAttachment] = (),
    ) -> Message:
        """End a streaming reply with its final text and status (complete, interrupted or
        error); committed before this returns."""
        rows.check_choice(status, "status", FINAL_STATUSES)
        rows.check_text(text, "reply text", self.limits.max_text_chars)
        rows.check_number(latency_ms, "latency")
        rows.check_number(tokens, "token count")
        prepared = self._prepare(attachments)
        with self.db.write() as conn:
            row = self._streaming(conn, user_key, message_id)
            conn.execute(
                "UPDATE messages SET text = ?, status = ?, latency_ms = ?, tokens = ? WHERE id = ?",
                (text, status, latency_ms, tokens, row["id"]),
            )
            conn.execute("UPDATE conversations SET updated = ? WHERE id = ?", (rows.now(), row["conversation_id"]))
            self._insert_attachments(conn, row["id"], prepared)
            return self._message(conn, user_key, row["id"])

    def set_feedback(self, user_key: str, message_id: str, feedback: str | None) -> None:
        """Record "like" or "dislike" on a message (None clears it)."""
        if feedback is not None:
            rows.check_choice(feedback, "feedback", FEEDBACK)
        with self.db.write() as conn:
            row = rows.owned_message(conn, user_key, message_id)
            conn.execute("UPDATE messages SET feedback = ? WHERE id = ?", (feedback, row["id"]))

    def _truncate(self, user_key: str, message_id: str, keep: bool) -> int:
        with self.db.write() as conn:
            row = rows.owned_message(conn, user_key, message_id)
            where = "m.conversation_id = ? AND m.position " + (">" if keep else ">=") + " ?"
            params = (row["conversation_id"], row["position"])
            shas = retention.shas_under(conn, where, params)
            count = conn.execute(f"DELETE FROM messages AS m WHERE {where}", params).rowcount
            conn.execute("UPDATE conversations SET updated = ? WHERE id = ?", (rows.now(), row["conversation_id"]))
        retention.collect_blobs(self.db, self.blobs, shas)
        return count

    def truncate_after(self, user_key: str, message_id: str) -> int:
        """Delete every message after this one (undo); returns how many were deleted."""
        return self._truncate(user_key, message_id, keep=True)

    def delete_from(self, user_key: str, message_id: str) -> int:
        """Delete this message and every later one (regenerate, edit); returns how many."""
        return self._truncate(user_key, message_id, keep=False)

    # ------------------------------------------------------------------------- media

    def attachment_path(self, user_key: str, attachment_id: str) -> Path:
        """The file holding an attachment's bytes (read it, never write it)."""
        with self.db.read() as conn:
            row = rows.owned_attachment(conn, user_key, attachment_id)
        if row["removed"] is not None:
            raise MediaRemoved(attachment_id)
        return self.blobs.path(row["sha256"])

    def read_attachment(self, user_key: str, attachment_id: str) -> bytes:
        try:
            return self.attachment_path(user_key, attachment_id).read_bytes()
        except FileNotFoundError:  # deleted since the lookup: it is gone now
            raise NotFound("attachment", attachment_id) from None

    # ------------------------------------------------------------------------- search

    def search(
        self, user_key: str, query: str, limit: int = 20, highlight: tuple[str, str] = ("**", "**")
    ) -> list[SearchHit]:
        """The user's messages (text or transcript) matching `query`, best first."""
        with self.db.read() as conn:
            return fts.search(conn, user_key, query, limit, highlight)

    # ------------------------------------------------------------------------- export/import

    def export_zip(
        self, user_key: str, destination: str | os.PathLike | BinaryIO, conversation_id: str | None = None
    ) -> int:
        """Write one conversation (or all of the user's) as a self-contained zip; returns
        the number of conversations written."""
        return transfer.export_zip(self.db, self.blobs, user_key, destination, conversation_id)

    def import_zip(self, user_key: str, source: str | os.PathLike | bytes | BinaryIO) -> ImportResult:
        """Add the conversations of an export zip to this user's (new ids; duplicates
        skipped). Validates everything first: ImportRejected leaves the store unchanged."""
        rows.check_user_key(user_key)
        return transfer.import_zip(self.db, self.blobs, self.limits, user_key, source)

    # ------------------------------------------------------------------------- retention

    def drop_media_older_than(self, days: float, user_key: str | None = None) -> int:
        """Drop the bytes of attachments on messages older than `days` (every user's, or
        one's); text stays. Returns how many attachments were dropped."""
        rows.check_number(days, "number of days", optional=False)
        return retention.drop_media_older_than(self.db, self.blobs, days, user_key)

    def delete_user_data(self, user_key: str) -> bool:
        """Erase everything of a user, and the media no other user shares."""
        return retention.delete_user_data(self.db, self.blobs, user_key)

    def collect_garbage(self) -> int:
        """Delete media files nothing references (left by a crash); returns how many."""
        return retention.collect_garbage(self.db, self.blobs)

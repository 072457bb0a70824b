"""The schema, as numbered migrations recorded in the `schema_migrations` table.

    migrate(db) -> int      check the version, apply what is missing, switch on WAL; returns
                            the version now in force. Raises SchemaTooNew, touching nothing,
                            when the database was written by newer code.

To change the schema, append a `Migration(N + 1, "what it does", (statements...))` to
MIGRATIONS; never edit one that has shipped. Each migration runs in the same transaction as
the row recording it, so a crash leaves either all of it or none.

Tables (migration 1): users; conversations (owner, title, model, settings JSON, times);
messages (conversation, position, role, text, transcript, status, model, settings JSON,
latency, tokens, feedback, created); attachments (message, kind, mime, size, sha256,
removed); messages_fts, an FTS5 index over messages.text and .transcript kept in step by
triggers. Public ids are random hex; integer ids never leave the store.
"""

from __future__ import annotations

import sqlite3
import time
from typing import NamedTuple

from chat_app.store.database import Database
from chat_app.store.errors import SchemaTooNew, StoreError


class Migration(NamedTuple):
    version: int
    name: str
    statements: tuple[str, ...]


_INITIAL = (
    """CREATE TABLE users (
        id INTEGER PRIMARY KEY,
        user_key TEXT NOT NULL UNIQUE,
        created REAL NOT NULL)""",
    """CREATE TABLE conversations (
        id INTEGER PRIMARY KEY,
        public_id TEXT NOT NULL UNIQUE,
        user_id INTEGER NOT NULL REFERENCES users(id) ON DELETE CASCADE,
        title TEXT NOT NULL DEFAULT '',
        model TEXT,
        settings TEXT NOT NULL DEFAULT '{}',
        created REAL NOT NULL,
        updated REAL NOT NULL)""",
    "CREATE INDEX conversations_by_user ON conversations(user_id, updated)",
    """CREATE TABLE messages (
        id INTEGER PRIMARY KEY,
        public_id TEXT NOT NULL UNIQUE,
        conversation_id INTEGER NOT NULL REFERENCES conversations(id) ON DELETE CASCADE,
        position INTEGER NOT NULL,
        role TEXT NOT NULL CHECK (role IN ('system', 'user', 'assistant')),
        text TEXT NOT NULL DEFAULT '',
        transcript TEXT,
        status TEXT NOT NULL
            CHECK (status IN ('streaming', 'complete', 'interrupted', 'error')),
        model TEXT,
        settings TEXT,
        latency_ms REAL,
        tokens INTEGER,
        feedback TEXT CHECK (feedback IN ('like', 'dislike')),
        created REAL NOT NULL,
        UNIQUE (conversation_id, position))""",
    "CREATE INDEX messages_streaming ON messages(status) WHERE status = 'streaming'",
    """CREATE TABLE attachments (
        id INTEGER PRIMARY KEY,
        public_id TEXT NOT NULL UNIQUE,
        message_id INTEGER NOT NULL REFERENCES messages(id) ON DELETE CASCADE,
        position INTEGER NOT NULL,
        kind TEXT NOT NULL CHECK (kind IN ('image', 'audio')),
        mime TEXT NOT NULL,
        size INTEGER NOT NULL,
        sha256 TEXT NOT NULL,
        created REAL NOT NULL,
        removed REAL)""",
    "CREATE INDEX attachments_by_message ON attachments(message_id, position)",
    "CREATE INDEX attachments_by_sha256 ON attachments(sha256)",
    """CREATE VIRTUAL TABLE messages_fts USING fts5(
        text, transcript, content='messages', content_rowid='id',
        tokenize='unicode61 remove_diacritics 2')""",
    """CREATE TRIGGER messages_fts_insert AFTER INSERT ON messages BEGIN
        INSERT INTO messages_fts(rowid, text, transcript)
        VALUES (new.id, new.text, coalesce(new.transcript, ''));
    END""",
    """CREATE TRIGGER messages_fts_delete AFTER DELETE ON messages BEGIN
        INSERT INTO messages_fts(messages_fts, rowid, text, transcript)
        VALUES ('delete', old.id, old.text, coalesce(old.transcript, ''));
    END""",
    """CREATE TRIGGER messages_fts_update AFTER UPDATE OF text, transcript ON messages BEGIN
        INSERT INTO messages_fts(messages_fts, rowid, text, transcript)
        VALUES ('delete', old.id, old.text, coalesce(old.transcript, ''));
        INSERT INTO messages_fts(rowid, text, transcript)
        VALUES (new.id, new.text, coalesce(new.transcript, ''));
    END""",
)

MIGRATIONS: tuple[Migration, ...] = (
    Migration(1, "users, conversations, messages, attachments, full-text index", _INITIAL),
)
LATEST = MIGRATIONS[-1].version

_CREATE_LEDGER = """CREATE TABLE IF NOT EXISTS schema_migrations (
    version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied REAL NOT NULL)"""


def current_version(conn: sqlite3.Connection) -> int:
    """The highest migration recorded (0 for a new, empty database)."""
    exists = conn.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'schema_migrations'").fetchone()
    if not exists:
        return 0
    return conn.execute("SELECT coalesce(max(version), 0) FROM schema_migrations").fetchone()[0]


def migrate(db: Database) -> int:
    """Bring the database up to LATEST; refuse (unchanged) one that is newer than LATEST."""
    try:
        with db.read() as conn:  # look before touching anything
            found = current_version(conn)
    except sqlite3.DatabaseError as exc:
        raise StoreError(f"The file {db.path} is not a conversation database ({exc}).") from exc
    if found > LATEST:
        raise SchemaTooNew(found, LATEST, db.describe())
    db.enable_wal()
    if found == LATEST:
        return found
    with db.write() as conn:
        conn.execute(_CREATE_LEDGER)
        found = current_version(conn)  # another process may have migrated meanwhile
        if found > LATEST:
            raise SchemaTooNew(found, LATEST, db.describe())
        for migration in MIGRATIONS:
            if migration.version > found:
                for statement in migration.statements:
                    conn.execute(statement)
                conn.execute(
                    "INSERT INTO schema_migrations (version, name, applied) VALUES (?, ?, ?)",
                    (migration.version, migration.name, time.time()),
                )
    return LATEST

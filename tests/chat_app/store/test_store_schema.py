"""Migrations, connection settings, database URLs, and databases the store must refuse."""

from __future__ import annotations

import hashlib
import sqlite3

import pytest

from chat_app.store import ConversationStore, SchemaTooNew, StoreError, migrations
from chat_app.store.database import sqlite_path
from chat_app.store.migrations import LATEST, Migration


def _ledger(path):
    conn = sqlite3.connect(path)
    try:
        return conn.execute("SELECT version, name FROM schema_migrations ORDER BY version").fetchall()
    finally:
        conn.close()


def test_a_new_database_is_migrated_once_and_in_wal_mode(data_dir):
    with ConversationStore(data_dir) as store:
        assert store.schema_version == LATEST == 1
        with store.db.read() as conn:
            assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
            assert conn.execute("PRAGMA foreign_keys").fetchone()[0] == 1
            assert conn.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL
            assert conn.execute("PRAGMA busy_timeout").fetchone()[0] >= 5000
    with ConversationStore(data_dir):
        pass
    assert _ledger(data_dir / "chat.db") == [(1, migrations.MIGRATIONS[0].name)]


def test_a_newer_schema_is_refused_and_left_untouched(data_dir):
    with ConversationStore(data_dir) as store:
        store.append_message("u", store.create_conversation("u").id, "user", "from the future")
    conn = sqlite3.connect(data_dir / "chat.db")
    conn.execute("INSERT INTO schema_migrations VALUES (7, 'from a newer app', 0)")
    conn.commit()
    conn.close()
    before = hashlib.sha256((data_dir / "chat.db").read_bytes()).hexdigest()
    with pytest.raises(SchemaTooNew) as error:
        ConversationStore(data_dir)
    message = str(error.value)
    assert "schema version 7" in message and "up to 1" in message and "untouched" in message
    assert hashlib.sha256((data_dir / "chat.db").read_bytes()).hexdigest() == before
    assert _ledger(data_dir / "chat.db")[-1] == (7, "from a newer app")


def test_a_failed_migration_leaves_the_previous_version(data_dir, monkeypatch):
    ConversationStore(data_dir).close()
    broken = Migration(2, "add a column, then fail", ("ALTER TABLE users ADD COLUMN nickname TEXT", "THIS IS NOT SQL"))
    monkeypatch.setattr(migrations, "MIGRATIONS", migrations.MIGRATIONS + (broken,))
    monkeypatch.setattr(migrations, "LATEST", 2)
    with pytest.raises(sqlite3.OperationalError):
        ConversationStore(data_dir)
    assert [v for v, _ in _ledger(data_dir / "chat.db")] == [1]
    conn = sqlite3.connect(data_dir / "chat.db")
    assert "nickname" not in [row[1] for row in conn.execute("PRAGMA table_info(users)")]
    conn.close()


def test_a_later_migration_is_applied_to_an_existing_database(data_dir, monkeypatch):
    with ConversationStore(data_dir) as store:
        store.create_conversation("u")
    extra = Migration(2, "a nickname per user", ("ALTER TABLE users ADD COLUMN nickname TEXT",))
    monkeypatch.setattr(migrations, "MIGRATIONS", migrations.MIGRATIONS + (extra,))
    monkeypatch.setattr(migrations, "LATEST", 2)
    with ConversationStore(data_dir) as store:
        assert store.schema_version == 2 and len(store.list_conversations("u")) == 1
    assert [v for v, _ in _ledger(data_dir / "chat.db")] == [1, 2]


def test_a_file_that_is_not_a_database_is_refused(data_dir):
    data_dir.mkdir()
    (data_dir / "chat.db").write_bytes(b"a shopping list, not a database" * 100)
    with pytest.raises(StoreError, match="file is not a database"):
        ConversationStore(data_dir)


@pytest.mark.parametrize(
    "url, path",
    [
        ("sqlite:////srv/chat/chat.db", "/srv/chat/chat.db"),
        ("sqlite:///relative/chat.db", "relative/chat.db"),
        ("sqlite:///with%20space.db", "with space.db"),
        ("sqlite://", ":memory:"),
        ("sqlite:///:memory:", ":memory:"),
        ("/plain/path.db", "/plain/path.db"),
    ],
)
def test_database_urls(url, path):
    assert sqlite_path(url) == path


@pytest.mark.parametrize(
    "url, message",
    [
        ("postgresql://db.example/chat", "not supported yet"),
        ("sqlite://host/chat.db", "malformed"),
    ],
)
def test_unsupported_database_urls_are_refused(tmp_path, url, message):
    with pytest.raises(StoreError, match=message):
        ConversationStore(tmp_path, url)


def test_the_database_may_live_outside_the_data_dir(tmp_path):
    url = f"sqlite:///{tmp_path / 'elsewhere.db'}"
    with ConversationStore(tmp_path / "data", url) as store:
        store.create_conversation("u")
    assert (tmp_path / "elsewhere.db").is_file() and not (tmp_path / "data" / "chat.db").exists()
    with pytest.raises(StoreError, match="does not exist"):
        ConversationStore(tmp_path, f"sqlite:///{tmp_path / 'missing' / 'chat.db'}")

"""Retention: dropping old media (text stays), erasing a user, sweeping orphan files."""

from __future__ import annotations

import os
import time

import pytest
from store_helpers import png, wav

from chat_app.store import MediaRemoved, NotFound, rows

DAY = 86_400.0


def _files(data_dir):
    return sorted(p.name for p in (data_dir / "media").rglob("*") if p.is_file())


@pytest.fixture
def aged(store, monkeypatch):
    """alice: a 40-day-old turn with an image and audio, and a new one reusing the image."""
    conversation = store.create_conversation("alice").id
    monkeypatch.setattr(rows, "now", lambda: time.time() - 40 * DAY)
    old = store.append_message(
        "alice",
        conversation,
        "user",
        "old photo",
        transcript="old",
        attachments=[("image", None, png(1)), ("audio", None, wav(1))],
    )
    monkeypatch.setattr(rows, "now", time.time)
    new = store.append_message(
        "alice", conversation, "user", "new photo", attachments=[("image", None, png(1)), ("image", None, png(2))]
    )
    return store, conversation, old, new


def test_old_media_is_dropped_but_the_text_stays(aged, data_dir):
    store, conversation, old, new = aged
    assert store.drop_media_older_than(30) == 2
    assert store.drop_media_older_than(30) == 0  # already done
    messages = store.get_conversation("alice", conversation).messages
    assert (messages[0].text, messages[0].transcript) == ("old photo", "old")
    assert all(a.removed for a in messages[0].attachments)
    assert not any(a.removed for a in messages[1].attachments)
    with pytest.raises(MediaRemoved, match="retention policy"):
        store.read_attachment("alice", old.attachments[0].id)
    # the audio is gone from disk; the image lives on because the new message uses it too
    assert _files(data_dir) == sorted(a.sha256 for a in new.attachments)
    assert store.read_attachment("alice", new.attachments[0].id) == png(1)
    assert len(store.search("alice", "photo")) == 2


def test_dropping_media_for_one_user(aged, data_dir):
    store, *_ = aged
    assert store.drop_media_older_than(30, user_key="bob") == 0
    assert len(_files(data_dir)) == 3
    assert store.drop_media_older_than(30, user_key="alice") == 2


def test_delete_user_data_erases_everything_of_theirs(aged, data_dir):
    store, conversation, old, new = aged
    bob = store.create_conversation("bob").id
    store.append_message("bob", bob, "user", "bob's photo", attachments=[("image", None, png(2))])
    assert store.delete_user_data("alice")
    assert store.list_conversations("alice") == [] and store.search("alice", "photo") == []
    with pytest.raises(NotFound):
        store.get_conversation("alice", conversation)
    with pytest.raises(NotFound):
        store.read_attachment("alice", new.attachments[1].id)
    assert _files(data_dir) == [new.attachments[1].sha256]  # png(2) is bob's too
    with store.db.read() as conn:
        for table in ("conversations", "messages", "attachments"):  # only bob's are left
            assert conn.execute(f"SELECT count(*) FROM {table}").fetchone()[0] == 1
        assert [tuple(r) for r in conn.execute("SELECT user_key FROM users")] == [("bob",)]
        assert conn.execute("SELECT count(*) FROM messages_fts WHERE messages_fts MATCH 'photo'").fetchone()[0] == 1
    assert store.delete_user_data("alice") is False
    assert store.ensure_user("alice").key == "alice"


def test_collect_garbage_removes_orphans_only(aged, data_dir):
    store, _, old, _ = aged
    folder = data_dir / "media" / "ab"
    folder.mkdir()
    orphan = folder / ("ab" + "0" * 62)
    orphan.write_bytes(b"left by a crash")
    stale, fresh = folder / ".tmp-stale", folder / ".tmp-fresh"
    stale.write_bytes(b"half")
    fresh.write_bytes(b"being written")
    os.utime(stale, (time.time() - 7200, time.time() - 7200))
    assert store.collect_garbage() == 2
    assert not orphan.exists() and not stale.exists() and fresh.exists()
    assert store.read_attachment("alice", old.attachments[1].id) == wav(1)

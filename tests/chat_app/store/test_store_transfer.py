"""Export -> import round trips: every field and every media byte comes back; duplicates
are recognised by their content."""

from __future__ import annotations

import hashlib
import io
import json
import zipfile

import pytest
from store_helpers import png, wav

from chat_app.store import ConversationStore, NotFound


def _fill(store, user="alice"):
    """Two conversations with images, audio, transcripts, settings, statuses and feedback."""
    first = store.create_conversation(user, model="tiny-v1", settings={"temperature": 0.3}).id
    store.append_message(user, first, "system", "Be brief.")
    store.append_message(
        user,
        first,
        "user",
        "What is this?",
        transcript="what is this",
        attachments=[("image", None, png(1)), ("audio", None, wav(1))],
    )
    reply = store.begin_reply(user, first, settings={"temperature": 0.0, "seed": 7})
    store.finish_reply(user, reply, "A grey square.", latency_ms=120.5, tokens=4, attachments=[("audio", None, wav(2))])
    store.set_feedback(user, reply, "like")
    store.append_message(
        user, first, "user", "And this one?", attachments=[("image", None, png(1))]
    )  # the same picture again
    broken = store.begin_reply(user, first, model="tiny-v2")
    store.finish_reply(user, broken, "Sorr", status="error")
    second = store.create_conversation(user, title="Just text").id
    store.append_message(user, second, "user", "hello")
    store.append_message(user, second, "assistant", "hi", model="other", status="interrupted")
    return first, second


def _comparable(conversation):
    """A conversation without its ids (which an import replaces)."""
    return (
        conversation.title,
        conversation.model,
        conversation.settings,
        conversation.created,
        conversation.updated,
        [
            (
                m.role,
                m.text,
                m.transcript,
                m.status,
                m.model,
                m.settings,
                m.latency_ms,
                m.tokens,
                m.feedback,
                m.created,
                [(a.kind, a.mime, a.size, a.sha256, a.removed) for a in m.attachments],
            )
            for m in conversation.messages
        ],
    )


def test_round_trip_into_another_store_keeps_everything(store, tmp_path):
    first, second = _fill(store)
    path = tmp_path / "alice.zip"
    assert store.export_zip("alice", path) == 2
    with ConversationStore(tmp_path / "elsewhere") as other:
        result = other.import_zip("alice-again", path)
        assert (len(result.conversations), result.duplicates) == (2, ())
        assert (result.messages, result.attachments) == (7, 4)
        assert not set(result.conversations) & {first, second}  # fresh ids
        for old_id, new_id in zip((first, second), result.conversations):
            old = store.get_conversation("alice", old_id)
            new = other.get_conversation("alice-again", new_id)
            assert _comparable(new) == _comparable(old)
            for old_m, new_m in zip(old.messages, new.messages):
                for a, b in zip(old_m.attachments, new_m.attachments):
                    assert other.read_attachment("alice-again", b.id) == store.read_attachment("alice", a.id)
        assert [h.snippet for h in other.search("alice-again", "grey")] == ["A **grey** square."]


def test_manifest_format(store):
    first, _ = _fill(store)
    buffer = io.BytesIO()
    assert store.export_zip("alice", buffer, conversation_id=first) == 1
    with zipfile.ZipFile(buffer) as archive:
        names = sorted(archive.namelist())
        manifest = json.loads(archive.read("manifest.json"))
        media = {name: archive.read(name) for name in names if name != "manifest.json"}
    assert (manifest["format"], manifest["version"]) == ("multimodal-chat-export", 1)
    assert len(manifest["conversations"]) == 1
    assert sorted(media) == sorted(
        f"media/{hashlib.sha256(b).hexdigest()}" for b in (png(1), wav(1), wav(2))
    )  # png(1) once
    assert all(hashlib.sha256(data).hexdigest() == name[6:] for name, data in media.items())
    reply = manifest["conversations"][0]["messages"][2]
    assert (reply["model"], reply["settings"], reply["latency_ms"], reply["tokens"]) == (
        "tiny-v1",
        {"temperature": 0.0, "seed": 7},
        120.5,
        4,
    )
    assert reply["attachments"][0]["file"] == f"media/{hashlib.sha256(wav(2)).hexdigest()}"


def test_importing_twice_skips_duplicates(store, data_dir):
    _fill(store)
    buffer = io.BytesIO()
    store.export_zip("alice", buffer)
    first = store.import_zip("bob", buffer.getvalue())
    again = store.import_zip("bob", buffer.getvalue())
    assert again.conversations == () and again.duplicates == first.conversations
    assert len(store.list_conversations("bob")) == 2
    own = store.import_zip("alice", buffer.getvalue())  # her own export: all already there
    assert own.conversations == () and len(own.duplicates) == 2
    files = [p for p in (data_dir / "media").rglob("*") if p.is_file()]
    assert len(files) == 3  # shared bytes are still one file each


def test_a_renamed_copy_is_still_a_duplicate_but_an_edited_one_is_not(store):
    first, _ = _fill(store)
    buffer = io.BytesIO()
    store.export_zip("alice", buffer, conversation_id=first)
    store.rename_conversation("alice", first, "Renamed")
    assert store.import_zip("alice", buffer.getvalue()).duplicates == (first,)
    store.append_message("alice", first, "user", "one more")
    assert len(store.import_zip("alice", buffer.getvalue()).conversations) == 1


def test_dropped_media_and_live_replies_export_cleanly(store, tmp_path):
    first, _ = _fill(store)
    store.begin_reply("alice", first)  # still streaming while exported
    store.drop_media_older_than(0)  # every attachment is older than now
    path = tmp_path / "export.zip"
    store.export_zip("alice", path, conversation_id=first)
    with zipfile.ZipFile(path) as archive:
        assert archive.namelist() == ["manifest.json"]
    with ConversationStore(tmp_path / "other", "sqlite://") as other:
        [new_id] = other.import_zip("u", path).conversations
        messages = other.get_conversation("u", new_id).messages
        assert messages[-1].status == "interrupted"
        assert all(a.removed for m in messages for a in m.attachments)
        assert len([a for m in messages for a in m.attachments]) == 4


def test_exporting_an_unknown_conversation_fails(store, tmp_path):
    with pytest.raises(NotFound):
        store.export_zip("alice", tmp_path / "x.zip", conversation_id="0" * 32)
    assert not list(tmp_path.glob("*.zip")) and not list(tmp_path.glob(".*tmp"))
    assert store.export_zip("nobody", tmp_path / "empty.zip") == 0

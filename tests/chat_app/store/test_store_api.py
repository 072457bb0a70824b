"""The ConversationStore API on a real SQLite file: conversations, messages, replies, media."""

from __future__ import annotations

import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
from store_helpers import png, wav

from chat_app.store import AttachmentRejected, ConversationStore, InvalidInput, Limits, NotFound, StoreError


def test_create_list_get_rename_delete(store):
    first = store.create_conversation("alice", model="tiny", settings={"temperature": 0.2})
    second = store.create_conversation("alice", title="  Holiday   plans ")
    assert re.fullmatch(r"[0-9a-f]{32}", first.id) and first.id != second.id
    assert (first.title, first.model, first.message_count) == ("", "tiny", 0)
    assert second.title == "Holiday plans"
    assert [c.id for c in store.list_conversations("alice")] == [second.id, first.id]

    store.rename_conversation("alice", first.id, "Renamed")
    got = store.get_conversation("alice", first.id)
    assert (got.title, got.model, got.settings, got.messages) == ("Renamed", "tiny", {"temperature": 0.2}, ())
    assert store.list_conversations("alice")[0].id == first.id  # renaming bumps `updated`

    store.delete_conversation("alice", first.id)
    assert [c.id for c in store.list_conversations("alice")] == [second.id]
    with pytest.raises(NotFound, match="No conversation with id"):
        store.get_conversation("alice", first.id)
    with pytest.raises(NotFound):
        store.delete_conversation("alice", first.id)


def test_list_paginates_and_counts_messages(memory_store):
    ids = [memory_store.create_conversation("u").id for _ in range(5)]
    memory_store.append_message("u", ids[0], "user", "hello")
    page = memory_store.list_conversations("u", limit=2)
    assert [c.id for c in page] == [ids[0], ids[4]] and page[0].message_count == 1
    assert [c.id for c in memory_store.list_conversations("u", limit=2, offset=2)] == ids[3:1:-1]
    assert memory_store.list_conversations("nobody") == []


def test_auto_title_comes_from_the_first_user_message(memory_store):
    conversation = memory_store.create_conversation("u")
    memory_store.append_message("u", conversation.id, "system", "Be brief.")
    memory_store.append_message(
        "u",
        conversation.id,
        "user",
        "  What is the tallest\nmountain in the whole wide world, and how long does it take to climb it?",
    )
    memory_store.append_message("u", conversation.id, "user", "Another question")
    title = memory_store.get_conversation("u", conversation.id).title
    assert title.startswith("What is the tallest mountain") and title.endswith("…")
    assert len(title) <= 60 and "\n" not in title

    voice = memory_store.create_conversation("u")
    memory_store.append_message("u", voice.id, "user", "", transcript="play some jazz")
    picture = memory_store.create_conversation("u")
    memory_store.append_message("u", picture.id, "user", attachments=[("image", None, png())])
    named = memory_store.create_conversation("u", title="Mine")
    memory_store.append_message("u", named.id, "user", "hello")
    titles = {c.id: c.title for c in memory_store.list_conversations("u")}
    assert (titles[voice.id], titles[picture.id], titles[named.id]) == ("play some jazz", "Image", "Mine")


def test_messages_keep_every_field_in_order(store):
    conversation = store.create_conversation("alice")
    user = store.append_message(
        "alice", conversation.id, "user", "Describe this", transcript="describe this", settings={"voice": True}
    )
    reply = store.append_message("alice", conversation.id, "assistant", "A cat.", model="m1", status="error")
    got = store.get_conversation("alice", conversation.id).messages
    assert [m.id for m in got] == [user.id, reply.id]
    assert (got[0].role, got[0].text, got[0].transcript, got[0].settings, got[0].status) == (
        "user",
        "Describe this",
        "describe this",
        {"voice": True},
        "complete",
    )
    assert (got[1].model, got[1].status, got[1].conversation_id) == ("m1", "error", conversation.id)
    assert store.get_message("alice", reply.id) == got[1]


def test_attachments_are_sniffed_and_content_addressed(store, data_dir, tmp_path):
    conversation = store.create_conversation("alice")
    upload = tmp_path / "upload.bin"
    upload.write_bytes(wav(1))
    message = store.append_message(
        "alice",
        conversation.id,
        "user",
        "two files",
        attachments=[
            ("image", "image/jpeg", png(1)),  # the declared subtype is not trusted
            ("audio", None, upload),  # a path the app received an upload at
            ("image", None, png(1)),  # the same bytes again
        ],
    )
    image, audio, again = message.attachments
    assert (image.kind, image.mime, image.size) == ("image", "image/png", len(png(1)))
    assert (audio.kind, audio.mime) == ("audio", "audio/wav")
    assert again.sha256 == image.sha256 and again.id != image.id
    path = store.attachment_path("alice", image.id)
    assert path == data_dir / "media" / image.sha256[:2] / image.sha256
    assert path.read_bytes() == png(1) and store.read_attachment("alice", audio.id) == wav(1)
    assert len([p for p in (data_dir / "media").rglob("*") if p.is_file()]) == 2
    assert "upload" not in str(store.attachment_path("alice", audio.id))


@pytest.mark.parametrize(
    "attachment, message",
    [
        (("image", None, b""), "empty"),
        (("image", None, b"just some text, not a picture"), "not in a format"),
        (("audio", None, png()), "not in a format"),
        (("image", "audio/wav", png()), "cannot have the type"),
        (("video", None, png()), "Unknown attachment kind"),
        (("image", None, png(), "extra"), "tuple"),
        (("image", None, 42), "bytes or a file path"),
        (("image", None, "/no/such/file.png"), "cannot be read"),
    ],
)
def test_bad_attachments_are_rejected_and_nothing_is_written(store, data_dir, attachment, message):
    conversation = store.create_conversation("alice")
    with pytest.raises(AttachmentRejected, match=message):
        store.append_message("alice", conversation.id, "user", "hi", attachments=[attachment])
    assert store.get_conversation("alice", conversation.id).messages == ()
    assert not [p for p in (data_dir / "media").rglob("*") if p.is_file()]


def test_attachment_size_limit(tmp_path):
    with ConversationStore(tmp_path, limits=Limits(max_attachment_bytes=100)) as store:
        conversation = store.create_conversation("u")
        big = tmp_path / "big.png"
        big.write_bytes(png(size=64))
        for source in (png(size=64), big):
            with pytest.raises(AttachmentRejected, match="larger than"):
                store.append_message("u", conversation.id, "user", attachments=[("image", None, source)])


def test_streaming_reply_lifecycle(store):
    conversation = store.create_conversation("alice", model="tiny", settings={"top_k": 5})
    store.append_message("alice", conversation.id, "user", "Tell me a story")
    reply_id = store.begin_reply("alice", conversation.id)
    started = store.get_message("alice", reply_id)
    assert (started.role, started.status, started.text, started.model, started.settings) == (
        "assistant",
        "streaming",
        "",
        "tiny",
        {"top_k": 5},
    )
    store.update_reply("alice", reply_id, "Once upon")
    assert store.get_message("alice", reply_id).text == "Once upon"
    done = store.finish_reply(
        "alice", reply_id, "Once upon a time.", latency_ms=42.5, tokens=5, attachments=[("audio", None, wav())]
    )
    assert (done.status, done.text, done.latency_ms, done.tokens) == ("complete", "Once upon a time.", 42.5, 5)
    assert done.attachments[0].mime == "audio/wav"
    with pytest.raises(InvalidInput, match="already ended"):
        store.finish_reply("alice", reply_id, "again")
    with pytest.raises(InvalidInput, match="already ended"):
        store.update_reply("alice", reply_id, "again")

    other = store.begin_reply("alice", conversation.id, model="big", settings={"top_k": 1})
    assert store.get_message("alice", other).model == "big"
    stopped = store.finish_reply("alice", other, "Half", status="interrupted")
    assert stopped.status == "interrupted" and stopped.settings == {"top_k": 1}


@dataclass(frozen=True)
class FakeGenerationConfig:
    temperature: float = 0.7
    stop: tuple[str, ...] = ("\n",)


def test_settings_may_be_a_dataclass(memory_store):
    conversation = memory_store.create_conversation("u", settings=FakeGenerationConfig())
    reply = memory_store.begin_reply("u", conversation.id, settings=FakeGenerationConfig(0.0))
    assert memory_store.get_conversation("u", conversation.id).settings == {"temperature": 0.7, "stop": ["\n"]}
    assert memory_store.get_message("u", reply).settings["temperature"] == 0.0


def test_feedback(memory_store):
    conversation = memory_store.create_conversation("u")
    message = memory_store.append_message("u", conversation.id, "assistant", "Hi")
    memory_store.set_feedback("u", message.id, "like")
    assert memory_store.get_message("u", message.id).feedback == "like"
    memory_store.set_feedback("u", message.id, None)
    assert memory_store.get_message("u", message.id).feedback is None
    with pytest.raises(InvalidInput, match="like, dislike"):
        memory_store.set_feedback("u", message.id, "love")


def test_truncate_after_and_delete_from(store, data_dir):
    conversation = store.create_conversation("alice")
    ids = [
        store.append_message("alice", conversation.id, role, f"m{i}", attachments=[("image", None, png(i))]).id
        for i, role in enumerate(["user", "assistant"] * 3)
    ]
    assert store.truncate_after("alice", ids[3]) == 2
    assert [m.id for m in store.get_conversation("alice", conversation.id).messages] == ids[:4]
    assert store.delete_from("alice", ids[1]) == 3
    assert [m.text for m in store.get_conversation("alice", conversation.id).messages] == ["m0"]
    assert len([p for p in (data_dir / "media").rglob("*") if p.is_file()]) == 1
    reply = store.append_message("alice", conversation.id, "assistant", "regenerated")
    assert store.get_conversation("alice", conversation.id).messages[-1].id == reply.id
    assert store.search("alice", "m4") == []


@pytest.mark.parametrize(
    "call, message",
    [
        (lambda s, c: s.append_message("u", c, "wizard", "hi"), "Unknown role"),
        (lambda s, c: s.append_message("u", c, "user", 42), "must be a string"),
        (lambda s, c: s.append_message("u", c, "user", "x" * 101), "limit is 100"),
        (lambda s, c: s.append_message("u", c, "user", "hi", status="streaming"), "Unknown status"),
        (lambda s, c: s.append_message("u", c, "user", "hi", settings={"f": object()}), "JSON"),
        (lambda s, c: s.append_message("u", c, "user", "hi", settings=[1, 2]), "mapping"),
        (lambda s, c: s.rename_conversation("u", c, "   "), "non-empty"),
        (lambda s, c: s.rename_conversation("u", c, "t" * 201), "at most 200"),
        (lambda s, c: s.create_conversation(""), "user key"),
        (lambda s, c: s.finish_reply("u", s.begin_reply("u", c), "x", latency_ms=-1), "at least 0"),
        (lambda s, c: s.finish_reply("u", s.begin_reply("u", c), "x", status="done"), "status"),
    ],
)
def test_invalid_input_is_refused_with_a_sentence(tmp_path, call, message):
    with ConversationStore(tmp_path, "sqlite://", limits=Limits(max_text_chars=100)) as store:
        conversation = store.create_conversation("u").id
        with pytest.raises(InvalidInput, match=message) as error:
            call(store, conversation)
        assert str(error.value)[0].isupper() and str(error.value).endswith(".")


def test_data_survives_reopening(data_dir):
    with ConversationStore(data_dir) as store:
        conversation = store.create_conversation("alice")
        message = store.append_message(
            "alice", conversation.id, "user", "remember me", attachments=[("image", None, png(3))]
        )
        user = store.ensure_user("alice")
    with ConversationStore(data_dir) as store:
        assert store.recovered == 0 and store.ensure_user("alice") == user
        again = store.get_conversation("alice", conversation.id).messages[0]
        assert again == message
        assert store.read_attachment("alice", again.attachments[0].id) == png(3)


def test_a_closed_store_says_so(tmp_path):
    store = ConversationStore(tmp_path)
    store.close()
    with pytest.raises(StoreError, match="closed"):
        store.list_conversations("u")


def test_the_store_imports_neither_torch_nor_gradio():
    code = "import sys, chat_app.store; print(sorted({'torch', 'gradio'} & {m.split('.')[0] for m in sys.modules}))"
    result = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        cwd=Path(__file__).resolve().parents[3],
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"

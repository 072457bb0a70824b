"""User B, knowing every one of user A's ids, can neither see nor change any of A's data."""

from __future__ import annotations

import io
import json
import zipfile

import pytest
from store_helpers import png

from chat_app.store import NotFound


@pytest.fixture
def alice(store):
    """alice's conversation, message, streaming reply and attachment ids."""
    conversation = store.create_conversation("alice", title="Secret plans").id
    message = store.append_message(
        "alice", conversation, "user", "the password is swordfish", attachments=[("image", None, png(42))]
    )
    reply = store.begin_reply("alice", conversation)
    store.append_message("bob", store.create_conversation("bob").id, "user", "bob's own")
    return {
        "conversation": conversation,
        "message": message.id,
        "reply": reply,
        "attachment": message.attachments[0].id,
    }


def _attempts(ids):
    c, m, r, a = ids["conversation"], ids["message"], ids["reply"], ids["attachment"]
    return {
        "get": lambda s: s.get_conversation("bob", c),
        "rename": lambda s: s.rename_conversation("bob", c, "mine now"),
        "delete": lambda s: s.delete_conversation("bob", c),
        "append": lambda s: s.append_message("bob", c, "user", "injected"),
        "begin reply": lambda s: s.begin_reply("bob", c),
        "update reply": lambda s: s.update_reply("bob", r, "hijacked"),
        "finish reply": lambda s: s.finish_reply("bob", r, "hijacked"),
        "get message": lambda s: s.get_message("bob", m),
        "feedback": lambda s: s.set_feedback("bob", m, "dislike"),
        "truncate": lambda s: s.truncate_after("bob", m),
        "delete from": lambda s: s.delete_from("bob", m),
        "attachment path": lambda s: s.attachment_path("bob", a),
        "read attachment": lambda s: s.read_attachment("bob", a),
        "export": lambda s: s.export_zip("bob", io.BytesIO(), conversation_id=c),
    }


@pytest.mark.parametrize(
    "action", sorted(_attempts(dict.fromkeys(["conversation", "message", "reply", "attachment"], "")).keys())
)
def test_guessed_ids_behave_like_unknown_ones(store, alice, action):
    attempt = _attempts(alice)[action]
    with pytest.raises(NotFound) as guessed:
        attempt(store)
    unknown = {k: "f" * 32 for k in alice}
    with pytest.raises(NotFound) as missing:
        _attempts(unknown)[action](store)
    # the same words whether the id exists (for someone else) or not at all
    assert str(guessed.value).replace(alice[_kind(action)], "?") == str(missing.value).replace("f" * 32, "?")
    # and alice's data is intact
    conversation = store.get_conversation("alice", alice["conversation"])
    assert conversation.title == "Secret plans"
    assert [m.text for m in conversation.messages] == ["the password is swordfish", ""]
    assert conversation.messages[1].status == "streaming"
    assert store.read_attachment("alice", alice["attachment"]) == png(42)


def _kind(action: str) -> str:
    if "attachment" in action:
        return "attachment"
    if action in ("update reply", "finish reply"):
        return "reply"
    if action in ("get message", "feedback", "truncate", "delete from"):
        return "message"
    return "conversation"


def test_bob_cannot_list_search_or_export_alices_data(store, alice):
    assert [c.title for c in store.list_conversations("bob")] == ["bob's own"]
    assert store.search("bob", "swordfish") == []
    assert store.search("bob", "password") == []
    buffer = io.BytesIO()
    assert store.export_zip("bob", buffer) == 1
    with zipfile.ZipFile(buffer) as archive:
        assert archive.namelist() == ["manifest.json"]
        assert "swordfish" not in archive.read("manifest.json").decode()
    assert [c["title"] for c in json.loads(zipfile.ZipFile(buffer).read("manifest.json"))["conversations"]] == [
        "bob's own"
    ]


def test_bob_erasing_himself_leaves_alice_alone(store, alice):
    store.append_message(
        "bob", store.list_conversations("bob")[0].id, "user", "same picture", attachments=[("image", None, png(42))]
    )
    assert store.delete_user_data("bob")
    assert store.read_attachment("alice", alice["attachment"]) == png(42)  # shared blob kept
    assert len(store.search("alice", "swordfish")) == 1


def test_user_keys_are_exact(store, alice):
    for key in ("Alice", "alice ", " alice", "alice%", "%", "*"):
        assert store.list_conversations(key) == []
        assert store.search(key, "swordfish") == []
        with pytest.raises(NotFound):
            store.get_conversation(key, alice["conversation"])

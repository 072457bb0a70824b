"""gradio_client against the real app: `python -m chat_app.serve` in a subprocess with a tiny
random model (its replies are gibberish) and a fresh data dir."""

from __future__ import annotations

import json
import time
import uuid

import httpx
import pytest
from app_helpers import Server
from gradio_client import Client, handle_file
from gradio_client.exceptions import AuthenticationError
from gradio_client.utils import Status

from chat_app.render import safe_markdown
from chat_app.store import ConversationStore

pytestmark = pytest.mark.slow


def new_id() -> str:
    return uuid.uuid4().hex


def connect(server, browser_id: str | None = None, **kwargs) -> Client:
    """A client that has loaded the page as the browser `browser_id` (its localStorage id)."""
    client = Client(server.url, verbose=False, **kwargs)
    client.loaded = client.predict(browser_id, api_name="/load")  # (chat, list, title, identity, report…)
    return client


def send_args(text="", files=(), max_tokens=24, model=None):
    message = {"text": text, "files": [handle_file(str(f)) for f in files]}
    return (message, model, "", 0.0, 1.0, max_tokens, False)


def text_of(message: dict) -> str:
    return " ".join(p.get("text", "") for p in message["content"] if p.get("type") == "text" or "text" in p)


def notice_text(value) -> str:
    """The notice under the chat from an output (an update, or its value), as read."""
    value = value.get("value") if isinstance(value, dict) else value
    return (value or "").replace("\\", "")


def chat_value(value) -> list:
    """The chat from an output: a list, or an update that also restores the like/dislike marks."""
    return value["value"] if isinstance(value, dict) else value


def stored(server, key):
    with ConversationStore(server.data_dir, recover=False) as store:
        return [store.get_conversation(key, c.id) for c in store.list_conversations(key)]


@pytest.fixture(scope="module")
def model_name(tiny_model_dir):
    return "builtin:" + tiny_model_dir.name


def test_text_turn(server, model_name):
    browser = new_id()
    client = connect(server, browser)
    assert client.loaded[0] == [] and client.loaded[1]["choices"] == []
    chat, box, conversations, _, _ = client.predict(*send_args("Hello there", model=model_name), api_name="/send")
    assert [m["role"] for m in chat] == ["user", "assistant"] and text_of(chat[0]) == "Hello there"
    assert text_of(chat[1]).strip()
    assert conversations["choices"][0][0] == "Hello there"
    (conversation,) = stored(server, "browser:" + browser)
    assert [(m.role, m.status) for m in conversation.messages] == [("user", "complete"), ("assistant", "complete")]


def test_image_turn(server, model_name, image_png):
    browser = new_id()
    client = connect(server, browser)
    chat, *_ = client.predict(*send_args("What shapes?", [image_png], model=model_name), api_name="/send")
    kinds = [p["type"] for p in chat[0]["content"]]
    assert kinds == ["file", "text"]
    report, images, audio = client.predict(api_name="/report")
    assert "**Images**: 1" in report and "colors: white, red, blue" in report and len(images) == 1
    (conversation,) = stored(server, "browser:" + browser)
    assert conversation.messages[0].attachments[0].mime == "image/png"


def test_audio_turn_stores_the_transcript(server, model_name, speech_wav_16k):
    browser = new_id()
    client = connect(server, browser)
    chat, *_ = client.predict(*send_args("", [speech_wav_16k], model=model_name), api_name="/send")
    (conversation,) = stored(server, "browser:" + browser)
    transcript = conversation.messages[0].transcript
    assert transcript and {"quick", "lazy", "dog"} <= set(transcript.lower().replace(".", "").split())
    assert "quick brown" in text_of(chat[0])  # shown in the user's bubble
    assert conversation.messages[-1].status == "complete"


def test_stop_mid_stream(server, model_name):
    browser = new_id()
    client = connect(server, browser)
    job = client.submit(*send_args("Tell me a long story", max_tokens=1500, model=model_name), api_name="/send")
    deadline = time.monotonic() + 60
    while len(job.outputs()) < 4 and time.monotonic() < deadline:
        time.sleep(0.02)
    client.predict(api_name="/stop")
    while not job.done() and time.monotonic() < deadline:
        time.sleep(0.05)
    outputs = job.outputs()
    assert "Stopped" in text_of(outputs[-1][0][-1])
    (conversation,) = stored(server, "browser:" + browser)
    reply = conversation.messages[-1]
    assert reply.status == "interrupted" and 0 < reply.tokens < 1500
    live = [text_of(o[0][-1]) for o in outputs[:-1] if len(o[0]) == 2]
    assert safe_markdown(reply.text) == live[-1]  # what was shown is what is stored (as displayed)


def test_regenerate_edit_undo_feedback(server, model_name):
    browser = new_id()
    client = connect(server, browser)
    client.predict(*send_args("first question", model=model_name), api_name="/send")
    before = stored(server, "browser:" + browser)[0].messages
    client.predict(model_name, "", 0.9, 1.0, 16, False, api_name="/regenerate")
    after = stored(server, "browser:" + browser)[0].messages
    assert len(after) == 2 and after[0].id == before[0].id and after[1].id != before[1].id
    client.predict(0, "edited question", model_name, "", 0.0, 1.0, 16, False, api_name="/edit")
    edited = stored(server, "browser:" + browser)[0].messages
    assert [m.text for m in edited][0] == "edited question" and len(edited) == 2
    assert client.predict(1, "like", api_name="/feedback") is True
    assert stored(server, "browser:" + browser)[0].messages[1].feedback == "like"
    chat, box = client.predict(api_name="/undo")
    assert chat == [] and box["text"] == "edited question"


def test_bad_input_is_answered_in_a_notice(server, model_name, image_corrupt, not_an_image):
    browser = new_id()
    client = connect(server, browser)
    client.predict(*send_args("a good question", model=model_name), api_name="/send")
    before = stored(server, "browser:" + browser)[0].messages
    for text, files, expected in (
        ("", (), "Nothing to send"),
        ("x" * 100_000, (), "100,000 characters"),
        ("look", [image_corrupt], "damaged or incomplete"),
        ("read", [not_an_image], "not a file this app understands"),
        ("<script>alert(1)</script>", (), None),
    ):
        chat, *_, said = client.predict(*send_args(text, files, model=model_name), api_name="/send")
        if expected:
            assert notice_text(said).startswith("⚠️") and expected in notice_text(said)  # the notice, apart
            assert not any(expected in text_of(m) for m in chat) and len(chat) == 2  # not a chat bubble
            assert stored(server, "browser:" + browser)[0].messages == before  # history intact
    assert "&lt;script&gt;" in text_of(chat[-2])  # shown as text, stored as typed
    assert stored(server, "browser:" + browser)[0].messages[-2].text == "<script>alert(1)</script>"


def test_replies_stream_as_diffs(server, model_name):
    """Each streamed update carries only what changed (an "append" to the reply), not the chat."""
    config = httpx.get(server.url + "config").json()
    index = next(i for i, d in enumerate(config["dependencies"]) if d.get("api_name") == "send")
    session = new_id()[:12]
    data = [None, None, {"text": "Hello", "files": []}, model_name, "", 0.0, 1.0, 200, False]  # states first
    api = server.url + "gradio_api"
    httpx.post(
        api + "/queue/join",
        json={"data": data, "fn_index": index, "session_hash": session, "event_data": None, "trigger_id": None},
    ).raise_for_status()
    generating = []
    with httpx.stream("GET", f"{api}/queue/data?session_hash={session}", timeout=60) as events:
        for line in events.iter_lines():
            if line.startswith("data:"):
                message = json.loads(line[5:])
                if message["msg"] == "process_generating":
                    generating.append(message["output"]["data"][0])
                if message["msg"] == "process_completed":
                    break
    later = [edits for edits in generating[1:] if edits]
    assert later, "no streamed updates"
    assert all(edit[0] in ("append", "replace") and edit[1][0] == 1 for edits in later for edit in edits)
    assert any(edit[0] == "append" for edits in later for edit in edits)


def test_a_long_reply_does_not_block_others(server, model_name):
    """Replies queue (with a position) beyond --concurrency; light events never wait."""
    clients = [connect(server, new_id()) for _ in range(3)]
    jobs = [c.submit(*send_args("long", max_tokens=1500, model=model_name), api_name="/send") for c in clients]
    try:
        deadline = time.monotonic() + 30
        queued = None
        while queued is None and time.monotonic() < deadline:
            queued = next((j.status() for j in jobs if j.status().code == Status.IN_QUEUE), None)
            time.sleep(0.05)
        assert queued is not None and queued.rank is not None and queued.queue_size >= 1
        started = time.monotonic()
        connect(server, new_id())
        assert time.monotonic() - started < 5
    finally:
        for client in clients:
            client.predict(api_name="/stop")
        for job in jobs:
            job.cancel()


def test_users_only_see_their_own(server, model_name):
    alice_id = new_id()
    alice, bob = connect(server, alice_id), connect(server, new_id())
    alice.predict(*send_args("alice's secret plan", model=model_name), api_name="/send")
    (conversation,) = stored(server, "browser:" + alice_id)
    assert bob.predict(api_name="/new")[1]["choices"] == []
    assert bob.predict("secret", api_name="/search")["choices"] == []
    assert chat_value(bob.predict(conversation.id, api_name="/open")[0]) == []
    assert bob.predict(api_name="/export_all")["value"] is None  # bob has nothing to export
    assert alice.predict("secret", api_name="/search")["choices"][0][1] == conversation.id
    assert connect(server, alice_id).loaded[1]["choices"][0][1] == conversation.id  # alice, another tab


def test_the_v1_api_is_served_beside_the_app(server, model_name, login_server):
    models = httpx.get(server.url + "v1/models").json()
    assert [m["id"] for m in models["data"]] == [model_name]
    assert httpx.get(login_server.url + "v1/models").status_code == 401  # the app's logins apply
    assert httpx.get(login_server.url + "v1/models", auth=("bob", "builder")).status_code == 200


def test_history_survives_a_server_restart(server, model_name):
    """Runs last in this module: it kills the shared server (like a crash) and starts it again."""
    browser = new_id()
    client = connect(server, browser)
    client.predict(*send_args("remember this", model=model_name), api_name="/send")
    server.restart(kill=True)
    loaded = connect(server, browser).loaded
    chat, conversations = chat_value(loaded[0]), loaded[1]
    assert text_of(chat[0]) == "remember this" and chat[1]["role"] == "assistant"
    assert conversations["choices"][0][0] == "remember this"


# ----------------------------------------------------------------------------- logins, share links


OFFLINE = {
    "HTTP_PROXY": "http://127.0.0.1:9",
    "HTTPS_PROXY": "http://127.0.0.1:9",
    "ALL_PROXY": "",
    "NO_PROXY": "127.0.0.1,localhost",
}  # every outside request fails at once, as offline


@pytest.fixture(scope="module")
def login_server(tiny_model_dir, tmp_path_factory):
    folder = tmp_path_factory.mktemp("login-server")
    logins = folder / "logins.txt"
    logins.write_text("# one per line\nbob:builder\n")
    running = Server(
        tiny_model_dir,
        folder / "data",
        "--share",
        "--auth",
        "alice:wonderland",
        "--auth-file",
        str(logins),
        env=OFFLINE,
    ).start()
    deadline = time.monotonic() + 60
    while "Share link" not in running.log and time.monotonic() < deadline:
        time.sleep(0.2)
    yield running
    running.stop(kill=True)


def test_share_failure_is_one_clear_line_and_serving_goes_on(login_server):
    lines = [line for line in login_server.log.splitlines() if "share" in line.lower()]
    assert len(lines) == 1 and lines[0].startswith("Share link unavailable (")
    assert "served locally at http://127.0.0.1" in lines[0]
    assert httpx.get(login_server.url + "config").status_code in (200, 401)


def test_logins_keep_people_apart(login_server, model_name):
    with pytest.raises(AuthenticationError, match="credentials were not provided"):
        connect(login_server)  # no login: refused
    alice = connect(login_server, auth=("alice", "wonderland"))
    bob = connect(login_server, new_id(), auth=("bob", "builder"))
    assert "Signed in as **alice**" in alice.loaded[3]
    alice.predict(*send_args("only for alice", model=model_name), api_name="/send")
    assert bob.predict(api_name="/new")[1]["choices"] == []
    again = connect(login_server, new_id(), auth=("alice", "wonderland"))  # another device, same login
    assert again.loaded[1]["choices"][0][0] == "only for alice"
    assert stored(login_server, "user:alice") and not stored(login_server, "user:bob")


def test_share_without_login_warns_and_limits_guests(tiny_model_dir, tmp_path, model_name, speech_wav_16k):
    guest = Server(
        tiny_model_dir,
        tmp_path / "data",
        "--share",
        "--guest-turns-per-hour",
        "1",
        "--guest-max-upload-mb",
        "0.01",
        env=OFFLINE,
    ).start()
    try:
        deadline = time.monotonic() + 60
        while "Share link" not in guest.log and time.monotonic() < deadline:
            time.sleep(0.2)
        warning = [line for line in guest.log.splitlines() if line.startswith("Warning: --share without --auth")]
        assert len(warning) == 1 and "anyone with the link" in warning[0]
        assert httpx.get(guest.url + "v1/models").status_code == 404  # no API for guests
        client = connect(guest, new_id())
        *_, said = client.predict(*send_args("", [speech_wav_16k], model=model_name), api_name="/send")
        assert "files may be at most 10 kB" in notice_text(said)  # an oversize upload, for a guest
        client.predict(*send_args("one", model=model_name), api_name="/send")
        *_, said = client.predict(*send_args("two", model=model_name), api_name="/send")
        assert "1 message an hour" in notice_text(said)
    finally:
        guest.stop(kill=True)

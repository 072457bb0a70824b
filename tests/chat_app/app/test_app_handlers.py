"""ChatService without a browser: turns, stop, regenerate, edit, undo, feedback, bad input."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest
from app_helpers import FakeBackend, FakeSpeech

from chat_app.handlers import EMPTY_BOX, ChatService, Options
from chat_app.settings import GuestLimits, Settings
from chat_app.store import ConversationStore
from engine.types import ImageError, InputError

KEY = "browser:" + "a" * 32
OTHER = "browser:" + "b" * 32


def run(updates):
    """Drain a turn; returns the list of updates."""
    return list(updates)


def texts(message: dict) -> str:
    return " ".join(part.get("text", "") for part in message["content"] if part.get("type") == "text")


def only_conversation(store, key=KEY):
    found = store.list_conversations(key)
    assert len(found) == 1
    return store.get_conversation(key, found[0].id)


# ----------------------------------------------------------------------------- sending


def test_text_turn_streams_and_is_stored(service, store, options):
    updates = run(service.send(KEY, None, "Hello!", [], options, "s1"))
    assert updates[0].box == EMPTY_BOX  # the box is cleared at once
    assert texts(updates[0].messages[0]) == "Hello!"
    assert updates[-1].done and updates[-1].notice is None
    conversation = only_conversation(store)
    user, reply = conversation.messages
    assert (user.role, user.text) == ("user", "Hello!")
    assert (reply.role, reply.status, reply.text) == ("assistant", "complete", "Hello there. How are you?")
    assert reply.model == "fake" and reply.tokens == 6 and reply.latency_ms is not None
    assert reply.settings["temperature"] == 0.0 and reply.settings["report"]["observations"]
    assert conversation.title == "Hello!"
    assert updates[-1].conversation_id == conversation.id
    assert texts(updates[-1].messages[-1]) == "Hello there. How are you?"


def test_reply_grows_across_updates(settings, store):
    backend = FakeBackend(pieces=[f"w{i} " for i in range(30)], delay_s=0.01)
    service = ChatService(store, {"fake": backend}, settings, FakeSpeech())
    lengths = [len(texts(u.messages[-1])) for u in service.send(KEY, None, "go", [], Options("fake"), "s")]
    assert len(lengths) >= 4 and lengths == sorted(lengths)


def test_second_turn_continues_the_conversation(service, store, backend, options):
    first = run(service.send(KEY, None, "one", [], options, "s"))[-1].conversation_id
    last = run(service.send(KEY, first, "two", [], options, "s"))[-1]
    assert last.conversation_id == first
    assert [t.text for t in backend.calls[-1][0].turns] == ["one", "Hello there. How are you?", "two"]
    assert len(last.messages) == 4


def test_image_turn_keeps_the_picture(service, store, backend, options, image_png):
    updates = run(service.send(KEY, None, "What is this?", [str(image_png)], options, "s"))
    user = only_conversation(store).messages[0]
    assert [(a.kind, a.mime) for a in user.attachments] == [("image", "image/png")]
    assert backend.calls[-1][0].turns[-1].images  # the engine got the stored file
    shown = updates[-1].messages[0]["content"][0]
    assert shown["type"] == "file" and shown["file"]["mime_type"] == "image/png"
    assert Path(shown["file"]["path"]).suffix == ".png" and Path(shown["file"]["path"]).is_file()


def test_a_text_model_gets_the_picture_described_and_one_that_takes_none_refuses_it(
    settings, store, image_png, tmp_path
):
    """The default kind of model (SmolLM2 through the engine) reads pictures as the tools'
    findings: the app must send them (this was refused); a model that takes no pictures at all
    gets a notice, and nothing is stored or lost."""
    from engine.backends import load_backend
    from tests.engine.llm.conftest import tiny_llama_folder, tiny_llama_gguf

    gguf = tiny_llama_gguf(tmp_path, tiny_llama_folder(tmp_path, tie=True, max_positions=1024), quantize=False)
    reader = load_backend(str(gguf), device="cpu", asr=False)
    blind = FakeBackend(name="blind", images=False)
    service = ChatService(store, {reader.name: reader, "blind": blind}, settings, FakeSpeech())
    assert not reader.capabilities.images and reader.capabilities.takes_images
    updates = run(service.send(KEY, None, "What is this?", [str(image_png)], Options(reader.name, 0.0), "s"))
    assert updates[-1].notice is None and updates[-1].done
    user, reply = only_conversation(store).messages
    assert [a.kind for a in user.attachments] == ["image"] and reply.status == "complete"
    assert any("described by offline tools" in line for line in reply.settings["report"]["observations"])
    refused = run(service.send(KEY, None, "And this?", [str(image_png)], Options("blind", 0.0), "s"))
    assert "cannot see pictures" in refused[-1].notice and not blind.calls
    assert len(only_conversation(store).messages) == 2  # the first exchange is intact


def test_several_images_in_one_turn_and_across_turns(service, store, backend, options, image_png, image_webp):
    cid = run(service.send(KEY, None, "two", [str(image_png), str(image_webp)], options, "s"))[-1].conversation_id
    run(service.send(KEY, cid, "and one more", [str(image_png)], options, "s"))
    turns = backend.calls[-1][0].turns
    assert [len(t.images) for t in turns if t.role == "user"] == [2, 1]


def test_audio_turn_stores_the_transcript(service, store, backend, options, speech_wav_16k):
    updates = run(service.send(KEY, None, "", [str(speech_wav_16k)], options, "s"))
    user = only_conversation(store).messages[0]
    assert user.transcript == "what is in this picture"
    assert [a.kind for a in user.attachments] == ["audio"]
    assert "what is in this picture" in texts(updates[-1].messages[0])  # in the user's bubble
    turn = backend.calls[-1][0].turns[-1]
    assert turn.audio and "what is in this picture" in turn.text  # the model hears it as text too
    assert only_conversation(store).title == "what is in this picture"


def test_a_recording_without_speech_is_sent_with_a_note(store, backend, settings, options, silence_wav):
    speech = FakeSpeech(transcript=None, warnings=("No speech was heard in the recording.",))
    service = ChatService(store, {"fake": backend}, settings, speech)
    last = run(service.send(KEY, None, "", [str(silence_wav)], options, "s"))[-1]
    assert "(voice message)" in texts(last.messages[0])
    assert last.notice == "No speech was heard in the recording."  # the app's words, apart from the chat
    assert texts(last.messages[-1]) == "Hello there. How are you?"
    assert only_conversation(store).messages[-1].status == "complete"  # the model still got the sound
    assert "No speech was heard" in service.report(KEY, last.conversation_id).markdown


def test_bad_audio_found_by_recognition_is_refused(store, backend, settings, options, speech_wav_16k):
    from engine.types import AudioError

    service = ChatService(store, {"fake": backend}, settings, FakeSpeech(fail=AudioError("The clip is damaged.")))
    last = run(service.send(KEY, None, "hi", [str(speech_wav_16k)], options, "s"))[-1]
    assert last.notice == "The clip is damaged." and last.box["text"] == "hi"
    assert store.list_conversations(KEY) == []


def test_spoken_replies_come_sentence_by_sentence(service, speech, backend):
    updates = run(service.send(KEY, None, "hi", [], Options(backend.name, spoken=True), "s"))
    spoken = [u.speech for u in updates if u.speech]
    assert speech.spoken == ["Hello there.", "How are you?"]
    assert len(spoken) == 2 and all(s.startswith(b"RIFF") for s in spoken)


# ----------------------------------------------------------------------------- bad input


@pytest.fixture
def earlier(service, options):
    """A conversation with one turn, to check that refused input leaves it intact."""
    return run(service.send(KEY, None, "earlier message", [], options, "s"))[-1].conversation_id


def refused(service, store, cid, text, files, options, expect: str):
    before = store.get_conversation(KEY, cid).messages
    last = run(service.send(KEY, cid, text, [str(f) for f in files], options, "s"))[-1]
    assert last.done and last.notice and expect in last.notice, last.notice
    assert not any(expect in texts(m) for m in last.messages)  # in the notice only, not in a bubble
    assert store.get_conversation(KEY, cid).messages == before  # history intact
    assert len(last.messages) == len(before)  # the old messages, as they were
    return last


def test_empty_message_is_refused(service, store, earlier, options):
    refused(service, store, earlier, "   \n ", [], options, "Nothing to send")


def test_hundred_thousand_characters_are_refused(service, store, earlier, options):
    refused(service, store, earlier, "x" * 100_000, [], options, "100,000 characters")


def test_unsupported_file_is_refused(service, store, earlier, options, not_an_image, tmp_path):
    refused(service, store, earlier, "look", [not_an_image], options, "not a file this app understands")
    pdf = tmp_path / "paper.pdf"
    pdf.write_bytes(b"%PDF-1.4\n" + b"0" * 100)
    refused(service, store, earlier, "look", [pdf], options, "paper.pdf")


def test_corrupt_image_is_refused(service, store, earlier, options, image_corrupt, image_png):
    last = refused(service, store, earlier, "look", [image_png, image_corrupt], options, "damaged or incomplete")
    assert last.box == {"text": "look", "files": [str(image_png)]}  # the good picture stays in the box


@pytest.mark.filterwarnings("ignore::PIL.Image.DecompressionBombWarning")  # Pillow's own, on opening the bomb
def test_decompression_bomb_and_huge_image_are_refused(service, store, earlier, options, image_bomb, image_over_limit):
    refused(service, store, earlier, "", [image_bomb], options, "bomb.png")
    refused(service, store, earlier, "", [image_over_limit], options, "megapixels")


def test_oversize_upload_is_refused(store, backend, tmp_path, options, image_png, speech_wav_16k):
    settings = Settings(data_dir=tmp_path / "small", max_upload_mb=0.005)  # 5 kB
    service = ChatService(store, {"fake": backend}, settings, FakeSpeech())
    cid = run(service.send(KEY, None, "hi", [str(image_png)], options, "s"))[-1].conversation_id
    refused(service, store, cid, "", [speech_wav_16k], options, "files may be at most")


def test_too_many_files_are_refused(service, store, earlier, options, image_png):
    refused(service, store, earlier, "", [image_png] * 9, options, "at most 8")


def test_html_and_script_are_shown_as_text(service, store, options):
    attack = '<script>alert("x")</script><img src=x onerror=alert(1)> **bold** `<b>code</b>`'
    last = run(service.send(KEY, None, attack, [], options, "s"))[-1]
    assert only_conversation(store).messages[0].text == attack  # stored as typed
    shown = texts(last.messages[0])
    assert "<script>" not in shown and "<img" not in shown
    assert "&lt;script&gt;" in shown and "**bold**" in shown and "`<b>code</b>`" in shown


def test_model_input_error_rolls_back_the_turn(store, settings, options, earlier, service):
    broken = FakeBackend(fail_before=InputError("The message is too long for this model."), name="fake")
    service.backends["fake"] = broken
    last = run(service.send(KEY, earlier, "a very long question", [], options, "s"))[-1]
    assert last.notice == "The message is too long for this model."
    assert last.box == {"text": "a very long question", "files": []}  # given back to fix
    assert [m.text for m in store.get_conversation(KEY, earlier).messages] == [
        "earlier message",
        "Hello there. How are you?",
    ]


def test_model_input_error_on_a_first_message_leaves_no_empty_conversation(store, settings, options):
    service = ChatService(store, {"fake": FakeBackend(fail_before=ImageError("Unreadable."))}, settings, FakeSpeech())
    last = run(service.send(KEY, None, "hi", [], options, "s"))[-1]
    assert last.conversation_id is None and store.list_conversations(KEY) == []


def test_model_failure_mid_reply_is_stored_as_error(store, settings, options):
    service = ChatService(store, {"fake": FakeBackend(fail_after=3)}, settings, FakeSpeech())
    last = run(service.send(KEY, None, "hi", [], options, "s"))[-1]
    assert "the GPU caught fire" in last.notice
    reply = only_conversation(store).messages[-1]
    assert reply.status == "error" and reply.text == "Hello there."
    # the app keeps working
    run(service.send(KEY, last.conversation_id, "again", [], Options("fake"), "s"))


def test_guest_limits(store, backend, tmp_path, options, speech_wav_16k):
    settings = Settings(data_dir=tmp_path / "guest", guest=GuestLimits(turns_per_hour=2, max_upload_mb=0.01))
    service = ChatService(store, {"fake": backend}, settings, FakeSpeech())
    cid = run(service.send(KEY, None, "one", [], options, "s"))[-1].conversation_id
    assert "at most 10 kB" in run(service.send(KEY, cid, "", [str(speech_wav_16k)], options, "s"))[-1].notice
    run(service.send(KEY, cid, "two", [], options, "s"))
    last = run(service.send(KEY, cid, "three", [], options, "s"))[-1]
    assert "2 messages an hour" in last.notice
    assert run(service.send(OTHER, None, "someone else", [], options, "s"))[-1].notice is None


# ----------------------------------------------------------------------------- stop


def slow_service(store, settings, pieces=200):
    backend = FakeBackend(pieces=[f"word{i} " for i in range(pieces)], delay_s=0.01)
    return ChatService(store, {"fake": backend}, settings, FakeSpeech()), backend


def test_stop_keeps_what_was_shown(store, settings):
    service, backend = slow_service(store, settings)
    updates = []
    worker = threading.Thread(target=lambda: updates.extend(service.send(KEY, None, "go", [], Options("fake"), "tab")))
    worker.start()
    while len(updates) < 5:
        time.sleep(0.01)
    assert service.running("tab")
    assert service.stop("tab") is True
    worker.join(5)
    assert not worker.is_alive() and backend.freed.is_set()  # the engine's stream was closed
    reply = only_conversation(store).messages[-1]
    assert reply.status == "interrupted"
    live = [u for u in updates if not u.done]
    assert reply.text == texts(live[-1].messages[-1])  # exactly what was shown last
    assert 0 < len(reply.text) < len("".join(f"word{i} " for i in range(200)))
    assert "Stopped" in texts(updates[-1].messages[-1])
    assert not service.running("tab") and service.stop("tab") is False


def test_closing_the_stream_interrupts_and_frees(store, settings):
    """What Gradio does when the stop button cancels the event, or the tab closes."""
    service, backend = slow_service(store, settings)
    updates = service.send(KEY, None, "go", [], Options("fake"), "tab")
    seen = [next(updates) for _ in range(6)]
    updates.close()
    assert backend.freed.is_set()
    reply = only_conversation(store).messages[-1]
    assert reply.status == "interrupted" and reply.text == texts(seen[-1].messages[-1])


def test_closing_before_the_message_is_stored_leaves_nothing(store, settings):
    service, backend = slow_service(store, settings)
    updates = service.send(KEY, None, "go", [], Options("fake"), "tab")
    next(updates)  # the message is shown; it is not stored until it was checked and transcribed
    updates.close()
    assert store.list_conversations(KEY) == [] and not service.running("tab")


def test_stop_while_waiting_for_the_first_token(store, settings):
    backend = FakeBackend(pieces=["late"] * 20, delay_s=0.3)
    service = ChatService(store, {"fake": backend}, settings, FakeSpeech())
    worker = threading.Thread(target=lambda: list(service.send(KEY, None, "go", [], Options("fake"), "tab")))
    worker.start()
    while not service.running("tab"):
        time.sleep(0.01)
    service.stop("tab")
    worker.join(5)
    user, reply = only_conversation(store).messages
    assert (user.text, reply.status, reply.text) == ("go", "interrupted", "")


def test_interrupted_partial_reply_shows_after_restart(store, settings, tmp_path):
    service, _ = slow_service(store, settings)
    updates = service.send(KEY, None, "go", [], Options("fake"), "tab")
    for _ in range(4):
        next(updates)
    store.update_reply(KEY, only_conversation(store).messages[-1].id, "partial")  # as a checkpoint would
    store.close()  # the server dies here, mid-reply
    with ConversationStore(settings.data_dir) as reopened:
        reply = reopened.get_conversation(KEY, reopened.list_conversations(KEY)[0].id).messages[-1]
        assert (reply.status, reply.text) == ("interrupted", "partial")


# ----------------------------------------------------------------------------- regenerate, edit, undo


def counting_backend():
    return FakeBackend(pieces=lambda call: [f"reply {call}"])


def test_regenerate_replaces_the_last_reply(store, settings):
    service = ChatService(store, {"fake": counting_backend()}, settings, FakeSpeech())
    cid = run(service.send(KEY, None, "q1", [], Options("fake"), "s"))[-1].conversation_id
    run(service.send(KEY, cid, "q2", [], Options("fake"), "s"))
    last = run(service.regenerate(KEY, cid, Options("fake"), "s"))[-1]
    assert [m.text for m in store.get_conversation(KEY, cid).messages] == ["q1", "reply 1", "q2", "reply 3"]
    assert texts(last.messages[-1]) == "reply 3"
    assert "Nothing to regenerate" in run(service.regenerate(KEY, None, Options("fake"), "s"))[-1].notice


def test_edit_reruns_from_the_edited_message(store, settings, image_png):
    backend = counting_backend()
    service = ChatService(store, {"fake": backend}, settings, FakeSpeech())
    cid = run(service.send(KEY, None, "q1", [str(image_png)], Options("fake"), "s"))[-1].conversation_id
    run(service.send(KEY, cid, "q2", [], Options("fake"), "s"))
    run(service.edit(KEY, cid, 0, "q1 edited", Options("fake"), "s"))
    messages = store.get_conversation(KEY, cid).messages
    assert [m.text for m in messages] == ["q1 edited", "reply 3"]
    assert [a.kind for a in messages[0].attachments] == ["image"]  # the picture is kept
    assert "Only your own messages" in run(service.edit(KEY, cid, 1, "x", Options("fake"), "s"))[-1].notice


def test_undo_puts_the_message_back_in_the_box(service, store, options, image_png):
    cid = run(service.send(KEY, None, "first", [], options, "s"))[-1].conversation_id
    run(service.send(KEY, cid, "second", [str(image_png)], options, "s"))
    assert list(service.views.root.glob("*.png"))
    messages, box = service.undo(KEY, cid)
    assert not list(service.views.root.glob("*.png"))  # the undone picture's copy is gone
    assert box["text"] == "second" and len(box["files"]) == 1
    assert Path(box["files"][0]).suffix == ".png" and Path(box["files"][0]).read_bytes() == image_png.read_bytes()
    assert [texts(m) for m in messages] == ["first", "Hello there. How are you?"]
    assert len(store.get_conversation(KEY, cid).messages) == 2
    service.undo(KEY, cid)
    assert service.undo(KEY, cid) == ([], None)


def test_feedback(service, store, options):
    cid = run(service.send(KEY, None, "hi", [], options, "s"))[-1].conversation_id
    assert service.feedback(KEY, cid, 1, True)
    assert store.get_conversation(KEY, cid).messages[1].feedback == "like"
    assert service.feedback(KEY, cid, 1, "Dislike")
    assert store.get_conversation(KEY, cid).messages[1].feedback == "dislike"
    assert service.feedback(KEY, cid, 1, None)
    assert store.get_conversation(KEY, cid).messages[1].feedback is None
    assert not service.feedback(KEY, cid, 0, True)  # a user message
    assert not service.feedback(OTHER, cid, 1, True)  # someone else's


def test_report_says_what_the_model_saw(service, store, options, image_png, speech_wav_16k):
    cid = run(service.send(KEY, None, "look and listen", [str(image_png), str(speech_wav_16k)], options, "s"))[
        -1
    ].conversation_id
    report = service.report(KEY, cid)
    assert len(report.images) == 1 and len(report.audio) == 1
    for expected in (
        "what is in this picture",
        "colors: red",
        "fake",
        "temperature 0.0",
        "tokens/s",
        "first token after",
    ):
        assert expected in report.markdown, expected
    assert service.report(KEY, cid, 0).markdown == report.markdown  # the question shows its reply
    assert "Nothing yet" in service.report(KEY, None).markdown


# ----------------------------------------------------------------------------- users


def test_users_only_see_their_own(service, store, options):
    cid = run(service.send(KEY, None, "secret of A", [], options, "s"))[-1].conversation_id
    assert service.view(OTHER, cid) == []
    assert service.history.open(OTHER, cid) is None
    assert service.history.choices(OTHER) == []
    assert service.history.search(OTHER, "secret") == []
    assert service.report(OTHER, cid).markdown.startswith("*Nothing yet")
    # writing into A's conversation id as B starts B's own conversation
    last = run(service.send(OTHER, cid, "hello from B", [], options, "s"))[-1]
    assert last.conversation_id != cid
    assert [m.text for m in store.get_conversation(KEY, cid).messages] == ["secret of A", "Hello there. How are you?"]
    assert service.undo(OTHER, cid) == ([], None)


def test_scratch_files_are_purged_after_a_day(store, backend, settings):
    import os

    old = settings.scratch("export-")
    (old / "conversation.zip").write_bytes(b"zip")
    os.utime(old, (time.time() - 2 * 86400,) * 2)
    fresh = settings.scratch("undo-")
    ChatService(store, {"fake": backend}, settings, FakeSpeech())
    assert not old.exists() and fresh.exists()


# ----------------------------------------------------------------------------- model defaults


def test_the_settings_panel_starts_from_each_models_own_sampling(store, settings):
    from engine.backends.base import Sampling

    greedy, silent = FakeBackend(name="greedy"), FakeBackend(name="silent")
    greedy.sampling = Sampling(temperature=0.0, top_p=1.0)
    service = ChatService(store, {"greedy": greedy, "silent": silent}, settings)
    first = service.default_options()
    assert (first.model, first.temperature, first.top_p) == ("greedy", 0.0, 1.0)
    other = service.default_options("silent")  # no defaults of its own: the app's
    assert (other.model, other.temperature, other.top_p) == ("silent", 0.7, 0.95)
    assert service.default_options("no such model").model == "greedy"
    chosen = Settings(data_dir=settings.data_dir, temperature=1.1, top_p=0.5)  # the app's settings win
    assert ChatService(store, {"greedy": greedy}, chosen).default_options().temperature == 1.1

"""One turn, one load: each turn reads the conversation from the store once, and every reply
event (send, talk, regenerate, edit) goes through the one reply path."""

from __future__ import annotations

from types import SimpleNamespace

import gradio as gr
import pytest
from app_helpers import FakeBackend, FakeSpeech

from chat_app.events import ChatEvents, report_values
from chat_app.handlers import ChatService
from engine.speech.tts import SentenceSpeaker

KEY = "browser:" + "d" * 32
REQUEST = SimpleNamespace(username=None, session_hash="tab")
GUEST = "session:tab"  # who REQUEST is: no login, no browser id


def texts(message: dict) -> str:
    return " ".join(part.get("text", "") for part in message["content"] if part.get("type") == "text")


@pytest.fixture
def loads(store, monkeypatch):
    """How many times the real store's get_conversation was called."""
    calls = []
    original = store.get_conversation

    def counted(*args, **kwargs):
        calls.append(args)
        return original(*args, **kwargs)

    monkeypatch.setattr(store, "get_conversation", counted)
    return calls


def test_an_image_and_text_turn_loads_the_conversation_once(service, store, options, image_png, loads):
    cid = list(service.send(KEY, None, "first", [], options, "s"))[-1].conversation_id
    assert len(loads) == 0  # a new conversation: nothing to load
    updates = list(service.send(KEY, cid, "What is this?", [str(image_png)], options, "s"))
    assert len(loads) == 1
    last = updates[-1]
    stored = store.get_conversation(KEY, cid)
    assert last.messages == service.view(KEY, cid)  # the chat shown is the chat stored
    assert [m.status for m in stored.messages] == ["complete", "complete", "complete", "complete"]
    assert last.report.markdown == service.report(KEY, cid).markdown  # the report, without a second load


@pytest.mark.parametrize("turn", ["regenerate", "edit", "refused send", "undo", "feedback"])
def test_other_turns_load_the_conversation_once(service, store, options, image_png, loads, turn):
    cid = list(service.send(KEY, None, "question", [str(image_png)], options, "s"))[-1].conversation_id
    loads.clear()
    if turn == "regenerate":
        last = list(service.regenerate(KEY, cid, options, "s"))[-1]
    elif turn == "edit":
        last = list(service.edit(KEY, cid, 0, "question, edited", options, "s"))[-1]
        assert [a.kind for a in store.get_conversation(KEY, cid).messages[0].attachments] == ["image"]
        loads.pop()  # the look above is the test's own
    elif turn == "refused send":
        last = list(service.send(KEY, cid, "x" * 100_000, [], options, "s"))[-1]
        assert last.notice and "100,000" in last.notice
    elif turn == "undo":
        service.undo(KEY, cid)
        assert len(loads) == 1 and store.get_conversation(KEY, cid).messages == ()
        return
    else:
        assert service.feedback(KEY, cid, 1, True) and len(loads) == 1
        return
    assert len(loads) == 1
    loads.clear()
    assert last.done and last.messages[:2] == service.view(KEY, cid)[:2]
    assert last.report.markdown == service.report(KEY, cid).markdown


def test_a_refused_reply_rolls_back_from_what_was_loaded(store, settings, options, loads):
    from engine.types import InputError

    service = ChatService(store, {"fake": FakeBackend()}, settings, FakeSpeech())
    cid = list(service.send(KEY, None, "kept", [], options, "s"))[-1].conversation_id
    service.backends["fake"] = FakeBackend(fail_before=InputError("Too long for this model."))
    loads.clear()
    last = list(service.send(KEY, cid, "refused", [], options, "s"))[-1]
    assert len(loads) == 1
    assert last.box == {"text": "refused", "files": []}
    assert [texts(m) for m in last.messages] == ["kept", "Hello there. How are you?"]
    assert last.notice == "Too long for this model."
    assert [m.text for m in store.get_conversation(KEY, cid).messages] == ["kept", "Hello there. How are you?"]


# ----------------------------------------------------------------------------- the one reply path


@pytest.fixture
def events(store, settings):
    backend = FakeBackend(pieces=lambda call: [f"reply {call}."])
    service = ChatService(store, {"fake": backend}, settings, FakeSpeech())
    return ChatEvents(service, settings, ui=None)


OPTIONS = ("fake", "", 0.0, 1.0, 16, True)  # model, system prompt, temperature, top-p, max tokens, spoken


def test_every_reply_event_streams_through_the_one_path(events, store, speech_wav_16k, loads):
    sent = list(events.on_send(None, None, {"text": "q1", "files": []}, *OPTIONS, REQUEST))
    chat, box, cid, _, _, report, said = sent[-1]
    assert texts(chat[-1]) == "reply 1." and sent[0][1] == {"text": "", "files": []}  # the box is emptied
    assert report == report_values(events.service.report(GUEST, cid))
    loads.clear()
    spoken = [outputs[4] for outputs in sent if isinstance(outputs[4], bytes)]
    assert spoken and all(wav.startswith(b"RIFF") for wav in spoken)  # spoken replies on: sentence audio
    assert all(outputs[4] is not None for outputs in sent)  # no sound yet: the stream is not opened (skip)
    assert sent[0][6]["visible"] is False and said == gr.skip()  # a turn clears the notice; none was set
    assert all(outputs[5] is None for outputs in sent[:-1])  # only the last update carries the report

    talked = list(events.on_talk(None, cid, {"text": "", "files": []}, str(speech_wav_16k), *OPTIONS, REQUEST))
    assert talked[0][-1] is None and len(talked[0]) == 8  # the recorder is emptied with the first update
    assert texts(talked[-1][0][-1]) == "reply 2."
    regenerated = list(events.on_regenerate(None, cid, *OPTIONS, REQUEST))
    assert texts(regenerated[-1][0][-1]) == "reply 3."
    edited = list(events.on_edit_api(None, cid, 0, "q1 edited", *OPTIONS, REQUEST))
    assert [texts(m) for m in edited[-1][0]] == ["q1 edited", "reply 4."]
    stored = store.get_conversation(GUEST, cid).messages
    assert [(m.role, m.text) for m in stored] == [("user", "q1 edited"), ("assistant", "reply 4.")]
    loads.pop()  # the look above is the test's own
    assert len(loads) == 3  # talk, regenerate, edit: one load each (the first send made the conversation)
    assert list(events.on_talk(None, cid, None, None, *OPTIONS, REQUEST)) == []  # nothing recorded


def test_the_report_after_a_reply_event_needs_no_store(events, store, loads):
    *_, (chat, _, cid, _, _, ready, _) = events.on_send(None, None, {"text": "hi", "files": []}, *OPTIONS, REQUEST)
    loads.clear()
    assert events.on_reply_report(None, cid, ready, REQUEST) == ready and loads == []
    assert events.on_reply_report(None, cid, None, REQUEST) == ready and len(loads) == 1  # a stopped event


# ----------------------------------------------------------------------------- the one sentence loop


def test_sentence_speaker_speaks_each_sentence_once_as_it_ends():
    spoken = []
    speaker = SentenceSpeaker(lambda sentence: spoken.append(sentence) or f"<{sentence}>")
    sounds = [s for piece in ["Hello the", "re. How", " are you? ", "***", "\n", "Fine"] for s in speaker.push(piece)]
    assert sounds == ["<Hello there.>", "<How are you?>"] and spoken == ["Hello there.", "How are you?"]
    assert list(speaker.flush()) == ["<Fine>"]  # "***" had nothing to say


def test_sentence_speaker_skips_what_makes_no_sound():
    speaker = SentenceSpeaker(lambda sentence: None if sentence.startswith("Quiet") else sentence)
    assert list(speaker.push("Quiet please. Loud! Then")) == ["Loud!"]
    assert list(speaker.flush()) == ["Then"]

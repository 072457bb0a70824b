"""What the app says about a sound with no speech in it, with the real speech recognizer
(faster-whisper, the bundled Whisper tiny.en, the Silero VAD): worded for where the sound came
from (issue 21.3), and said in the update's notice, not in the chat."""

from __future__ import annotations

import pytest
from app_helpers import FakeBackend

from chat_app.handlers import ChatService, Options
from chat_app.speech import Speech
from tests.conftest import run_tool

KEY = "browser:" + "a" * 32


@pytest.fixture(scope="module")
def ten_silent_minutes(tmp_path_factory):
    path = tmp_path_factory.mktemp("silence") / "meeting.wav"
    run_tool("sox", "-D", "-n", "-r", "8000", "-c", "1", "-b", "16", path, "trim", "0", "600")
    return path


@pytest.fixture
def service(store, settings):
    return ChatService(store, {"fake": FakeBackend()}, settings, Speech())


def test_an_uploaded_silent_file_is_not_blamed_on_the_microphone(service, ten_silent_minutes):
    last = list(service.send(KEY, None, "", [str(ten_silent_minutes)], Options("fake"), "s"))[-1]
    assert service.speech.asr_problem is None, service.speech.asr_problem
    assert last.notice == (
        "meeting.wav is silent: there is no sound in the file. Check that it is the recording you meant to send."
    )
    shown = [part.get("text", "") for m in last.messages for part in m["content"]]
    assert not any("silent" in text for text in shown), shown  # said apart from the chat bubbles


def test_a_silent_recording_points_at_the_microphone(service, tmp_path):
    path = str(tmp_path / "audio.wav")  # what the microphone gave: 3 s of nothing
    run_tool("sox", "-D", "-n", "-r", "48000", "-c", "1", "-b", "16", path, "trim", "0", "3")
    last = list(service.send(KEY, None, "", [path], Options("fake"), "s", recorded=(path,)))[-1]
    assert last.notice.startswith("The recording is silent") and "microphone is connected" in last.notice

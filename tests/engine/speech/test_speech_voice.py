"""Desktop voice mode against a real PortAudio input: PulseAudio's virtual microphone fed from WAV files.

Nothing here mocks sounddevice: the voice loop records through PortAudio (ALSA's "pulse"
device) from a PulseAudio source that hears what `pulse.say(wav)` plays, in real time, and
plays its replies to a PulseAudio null sink whose monitor the tests record and transcribe.
"""

from __future__ import annotations

import os
import queue
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from speech_helpers import INTERRUPTION_TEXT, QUESTION_TEXT, Console, ScriptedBackend

from chat_app.voice import Microphone, SoundDeviceSink, VoiceLoop, VoiceOptions, import_sounddevice
from lab.speech.metrics import word_error_rate

ROOT = Path(__file__).resolve().parents[3]
pytestmark = pytest.mark.slow

LONG_REPLY = (
    "I heard you, and now I am going to tell you a long story about a cat who lived in a small house "
    "by the sea. Every morning the cat walked along the beach and looked at the boats. "
    "One day a fisherman gave the cat a fish, and they became friends for many years."
)


@pytest.fixture(scope="module")
def sd(pulse):
    sd = import_sounddevice()
    names = [device["name"] for device in sd.query_devices()]
    assert "pulse" in names, (
        f"PortAudio does not list ALSA's pulse device ({names}): apt-get install libasound2-plugins"
    )
    return sd


class TracingSink(SoundDeviceSink):
    """The real PortAudio sink, remembering what it played and whether it was cut off."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.started, self.results = threading.Event(), []

    def play(self, waveform, sample_rate):
        self.started.set()
        finished = super().play(waveform, sample_rate)
        self.results.append(finished)
        return finished


@pytest.fixture
def devices(sd):
    microphone, sink = Microphone("pulse", sd), TracingSink("pulse", sd)
    yield microphone, sink
    microphone.close()
    sink.close()


def run_in_thread(loop: VoiceLoop) -> threading.Thread:
    thread = threading.Thread(target=loop.run, daemon=True)
    thread.start()
    return thread


def test_hands_free_turn_is_heard_answered_and_spoken(pulse, devices, transcriber, question_wav, tmp_path):
    microphone, sink = devices
    backend, console = (
        ScriptedBackend("Once upon a time there was a small cat. It liked to sleep in the sun.", delay=0.02),
        Console(),
    )
    loop = VoiceLoop(
        backend,
        transcriber,
        microphone,
        queue.Queue(),
        sink,
        VoiceOptions(hands_free=True, max_turns=1, min_silence_ms=500),
        out=console,
    )
    speaker = pulse.record_speaker(tmp_path / "speaker.raw")
    try:
        thread = run_in_thread(loop)
        console.wait_for("[listening")
        pulse.say(question_wav, delay=0.3).join()
        thread.join(timeout=60)
        time.sleep(0.5)  # the end of the reply leaves PulseAudio
    finally:
        speaker.terminate()
        speaker.wait()
    assert not thread.is_alive()
    report = loop.reports[0]
    assert word_error_rate(QUESTION_TEXT, report.transcript) <= 0.15, (report.transcript, microphone.overflows)
    assert f"you: {report.transcript}" in console.text and "bot: Once upon a time" in console.text
    user, assistant = loop.conversation.turns
    assert user.role == "user" and user.audio and assistant.text == backend.reply
    assert report.first_token_at < report.first_audio_at < report.reply_done_at and sink.results == [True, True]
    # what reached the speaker is the reply, spoken: recognise it back
    spoken = np.fromfile(tmp_path / "speaker.raw", dtype="<i2").astype(np.float32) / 32768
    heard = transcriber.transcribe(spoken)
    assert word_error_rate(backend.reply, heard.text) <= 0.3, heard.text


def test_barge_in_stops_playback_and_generation_and_starts_the_next_turn(
    pulse, devices, transcriber, question_wav, interruption_wav
):
    microphone, sink = devices
    # The first sentence takes ~2.7 s to stream and ~6 s to speak; the rest would stream for ~3.5 s more.
    backend = ScriptedBackend(LONG_REPLY, "It is noon.", delay=0.12)
    console = Console()
    loop = VoiceLoop(
        backend,
        transcriber,
        microphone,
        queue.Queue(),
        sink,
        VoiceOptions(hands_free=True, max_turns=2, min_silence_ms=500),
        out=console,
    )
    thread = run_in_thread(loop)
    console.wait_for("[listening")
    pulse.say(question_wav, delay=0.3).join()
    assert sink.started.wait(30), console.text
    pulse.say(interruption_wav, delay=0.5).join()  # while the first sentence plays
    thread.join(timeout=60)
    assert not thread.is_alive(), console.text
    first, second = loop.reports
    assert first.interrupted and "[interrupted]" in console.text
    assert len(first.reply) < len(LONG_REPLY) - 60 and sink.results[0] is False  # generation and playback cut
    assert word_error_rate(INTERRUPTION_TEXT, second.transcript) <= 0.2, second.transcript
    assert [t.role for t in loop.conversation.turns] == ["user", "assistant", "user", "assistant"]
    assert loop.conversation.turns[1].text == first.reply  # what was said before the cut is kept


def test_push_to_talk_and_a_silent_recording_leaves_the_conversation_intact(pulse, devices, transcriber, question_wav):
    microphone, sink = devices
    keys, console = queue.Queue(), Console()
    loop = VoiceLoop(
        ScriptedBackend("Once upon a time.", delay=0.01),
        transcriber,
        microphone,
        keys,
        sink,
        VoiceOptions(hands_free=False),
        out=console,
    )
    thread = run_in_thread(loop)
    console.wait_for("[press Enter to talk")
    keys.put("enter")  # start, say nothing, stop
    console.wait_for("[recording")
    time.sleep(1.0)
    keys.put("enter")
    console.wait_for("is silent: no sound was recorded")
    assert loop.conversation.turns == []
    keys.put("enter")  # now speak
    console.wait_for("[recording", count=2)
    pulse.say(question_wav, delay=0.2).join()
    time.sleep(0.3)
    keys.put("enter")
    console.wait_for("Once upon a time.\n")
    keys.put("quit")
    thread.join(timeout=30)
    assert not thread.is_alive()
    assert [t.role for t in loop.conversation.turns] == ["user", "assistant"]
    assert word_error_rate(QUESTION_TEXT, loop.reports[0].transcript) <= 0.15


def voice_cli(*args, env=None, **options):
    return subprocess.Popen(
        [sys.executable, "launch.py", "voice", *map(str, args)],
        cwd=ROOT,
        text=True,
        env={**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONUNBUFFERED": "1", **(env or {})},
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        **options,
    )


def test_launch_voice_with_the_builtin_backend_on_the_virtual_microphone(pulse, sd, tiny_model_dir, question_wav):
    process = voice_cli(
        "--model",
        tiny_model_dir,
        "--hands-free",
        "--turns",
        "1",
        "--input-device",
        "pulse",
        "--output-device",
        "pulse",
        "--min-silence-ms",
        "500",
        "--max-new-tokens",
        "8",
        "--timings",
    )
    lines: list[str] = []
    reader = threading.Thread(target=lambda: lines.extend(iter(process.stdout.readline, "")), daemon=True)
    reader.start()
    deadline = time.monotonic() + 90
    while not any("[listening" in line for line in lines):
        assert process.poll() is None and time.monotonic() < deadline, process.stderr.read()
        time.sleep(0.1)
    pulse.say(question_wav, delay=0.3).join()
    try:
        assert process.wait(timeout=90) == 0, process.stderr.read()
    finally:
        process.kill()
    reader.join(timeout=5)
    heard = next(line for line in lines if line.startswith("you: "))
    assert word_error_rate(QUESTION_TEXT, heard[5:]) <= 0.15
    # the random tiny model's reply may be empty; the timings line is printed either way
    assert any(line.startswith("bot: ") for line in lines)
    assert any(line.startswith("[after you stopped: transcript ") for line in lines)


def test_list_devices_shows_pulseaudio(pulse, sd):
    process = voice_cli("--list-devices")
    out, err = process.communicate(timeout=60)
    assert process.returncode == 0 and " pulse " in out and "default input" in out, err


def test_no_microphone_is_a_clear_message(tmp_path):
    """No sound server and no sound card (this machine without PulseAudio): no input device at all."""
    empty = {"PULSE_SERVER": f"unix:{tmp_path}/nothing-here", "XDG_RUNTIME_DIR": str(tmp_path), "HOME": str(tmp_path)}
    process = voice_cli("--model", "unused", env=empty)
    out, err = process.communicate(timeout=60)
    assert process.returncode == 2 and "No microphone was found" in err and "--input-device" in err, err
    assert "Traceback" not in err


def test_missing_portaudio_says_what_to_install():
    """As sounddevice sees a machine without PortAudio: its library cannot be found."""
    code = (
        "import ctypes.util, sys; ctypes.util.find_library = lambda name: None; import launch; "
        "sys.exit(launch.main(['voice', '--list-devices']))"
    )
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert result.returncode == 2 and "apt-get install libportaudio2" in result.stderr, result.stderr
    assert "Traceback" not in result.stderr

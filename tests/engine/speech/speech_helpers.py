"""Helpers for the speech tests: external tools, a private PulseAudio server, a scripted backend.

`PulseAudio.start(folder)` runs a real PulseAudio daemon (as root too) with its own socket
and no system configuration, and gives it:
    speaker        a null sink: the default output (what the voice mode says can be recorded
                   from speaker.monitor)
    mic_feed       a null sink that `pulse.say(wav)` plays files into
    mic            a source remapped from mic_feed.monitor: the default input, a "microphone"
                   that hears whatever is played into mic_feed, in real time
Clients reach it through PULSE_SERVER (set for the test session), and PortAudio reaches it
through ALSA's "pulse" device (libasound2-plugins).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import threading
import time
from pathlib import Path

import pytest

from engine.backends.base import Capabilities

PASSAGE_TEXT = (
    "Hello, can you hear me? I would like to know what is in this picture. "
    "Please describe the colors and count the people. Then tell me a short story about a cat."
)
# Phrases Whisper tiny.en hears right through the virtual microphone run after run (some others
# flip between runs: "a short story about a cat" -> "... I'm out of cut", "today" -> "to me").
QUESTION_TEXT = "I can see a red circle and a blue square"
INTERRUPTION_TEXT = "what time is it in London"
PULSE_PACKAGES = "apt-get install pulseaudio pulseaudio-utils libasound2-plugins libportaudio2"


def run_tool(*args, stdout=None) -> None:
    """Run an external tool; fail the test with a clear message if it is missing or fails."""
    tool = str(args[0])
    if shutil.which(tool) is None:
        pytest.fail(
            f"{tool} is not installed; the speech tests need it (apt-get install espeak-ng sox "
            f"libsox-fmt-all ffmpeg; {PULSE_PACKAGES}).",
            pytrace=False,
        )
    result = subprocess.run(
        [str(a) for a in args], stdout=stdout or subprocess.PIPE, stderr=subprocess.PIPE, timeout=120
    )
    if result.returncode != 0:
        pytest.fail(f"{' '.join(map(str, args))} failed:\n{result.stderr.decode(errors='replace')}", pytrace=False)


class PulseAudio:
    def __init__(self, folder: Path, process: subprocess.Popen, env: dict):
        self.folder, self.process, self.env = folder, process, env
        self.server = env["PULSE_SERVER"]

    @classmethod
    def start(cls, folder: Path) -> PulseAudio:
        for tool in ("pulseaudio", "pactl", "paplay", "parec"):
            if shutil.which(tool) is None:
                pytest.fail(
                    f"{tool} is not installed: the desktop voice tests need a real PulseAudio ({PULSE_PACKAGES}).",
                    pytrace=False,
                )
        socket = folder / "native"
        env = {
            **os.environ,
            "HOME": str(folder),
            "XDG_RUNTIME_DIR": str(folder),
            "XDG_CONFIG_HOME": str(folder / "config"),
            "PULSE_RUNTIME_PATH": str(folder / "runtime"),
            "PULSE_STATE_PATH": str(folder / "state"),
            "PULSE_SERVER": f"unix:{socket}",
        }
        modules = [
            f"module-native-protocol-unix socket={socket} auth-anonymous=1",
            "module-null-sink sink_name=speaker rate=22050 channels=1",
            "module-null-sink sink_name=mic_feed rate=16000 channels=1",
            "module-remap-source master=mic_feed.monitor source_name=mic",
        ]
        log = folder / "pulseaudio.log"
        command = [
            "pulseaudio",
            "-n",
            "--daemonize=no",
            "--exit-idle-time=-1",
            "--system=false",
            "--use-pid-file=no",
            f"--log-target=file:{log}",
        ]
        for module in modules:
            command += ["-L", module]
        process = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        pulse = cls(folder, process, env)
        deadline = time.monotonic() + 20
        while pulse.pactl("info", check=False).returncode != 0:
            if process.poll() is not None or time.monotonic() > deadline:
                pulse.stop()
                text = log.read_text(errors="replace") if log.exists() else "(no log)"
                pytest.fail(f"PulseAudio did not start; its log:\n{text}", pytrace=False)
            time.sleep(0.2)
        pulse.pactl("set-default-sink", "speaker")
        pulse.pactl("set-default-source", "mic")
        return pulse

    def pactl(self, *args, check: bool = True) -> subprocess.CompletedProcess:
        result = subprocess.run(["pactl", *args], env=self.env, capture_output=True, text=True, timeout=20)
        if check and result.returncode != 0:
            pytest.fail(f"pactl {' '.join(args)} failed: {result.stderr}", pytrace=False)
        return result

    def say(self, wav: Path, delay: float = 0.0) -> threading.Thread:
        """Play a file into the virtual microphone (in the background, after `delay` seconds)."""

        def play():
            time.sleep(delay)
            subprocess.run(["paplay", "--device=mic_feed", str(wav)], env=self.env, timeout=60, check=True)

        thread = threading.Thread(target=play, daemon=True)
        thread.start()
        return thread

    def record_speaker(self, path: Path) -> subprocess.Popen:
        """Record what is played to the default output (speaker.monitor) as raw s16le 16 kHz mono."""
        return subprocess.Popen(
            ["parec", "--device=speaker.monitor", "--raw", "--format=s16le", "--rate=16000", "--channels=1", str(path)],
            env=self.env,
        )

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()


class Console:
    """A thread-safe stand-in for stdout that tests can wait on."""

    def __init__(self):
        self._parts, self._changed = [], threading.Condition()

    def write(self, text: str) -> None:
        with self._changed:
            self._parts.append(text)
            self._changed.notify_all()

    def flush(self) -> None:
        pass

    @property
    def text(self) -> str:
        with self._changed:
            return "".join(self._parts)

    def wait_for(self, needle: str, timeout: float = 30.0, count: int = 1) -> None:
        with self._changed:
            if not self._changed.wait_for(lambda: "".join(self._parts).count(needle) >= count, timeout):
                pytest.fail(
                    f"{needle!r} was not printed within {timeout} s; output so far:\n{''.join(self._parts)}",
                    pytrace=False,
                )


class ScriptedBackend:
    """A Backend that streams fixed replies word by word, `delay` seconds apart (stops on cancel).

    With several replies, call n gets replies[n] (the last one repeats)."""

    name = "scripted"
    capabilities = Capabilities(images=False, audio=True, context_length=4096)
    sampling = None

    def __init__(self, *replies: str, delay: float = 0.05):
        self.replies, self.delay = replies, delay
        self.finished_at: float | None = None
        self.conversations = []

    @property
    def reply(self) -> str:
        return self.replies[0]

    def stream(self, conversation, config=None, cancel=None, info=None):
        self.conversations.append([(t.role, t.text, len(t.audio)) for t in conversation.turns])
        reply = self.replies[min(len(self.conversations), len(self.replies)) - 1]
        for i, word in enumerate(reply.split(" ")):
            if cancel is not None and cancel.is_set():
                return
            time.sleep(self.delay)
            yield word if i == 0 else " " + word
        self.finished_at = time.perf_counter()

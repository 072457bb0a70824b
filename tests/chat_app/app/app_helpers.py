"""Test doubles and a real server for the web app tests.

FakeBackend(pieces, delay_s)   scripted replies; records what it was asked; honours cancel
FakeSpeech(transcript)         speech recognition / synthesis without models
Server(model_dir, data_dir)    `python -m chat_app.serve` in a subprocess on a free port
"""

from __future__ import annotations

import io
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import wave
from pathlib import Path

import httpx

from engine.backends.base import Capabilities
from engine.types import InputError, ReplyInfo

ROOT = Path(__file__).resolve().parents[3]


class FakeBackend:
    """A Backend whose replies are scripted: `pieces` (or a function of the call number)."""

    def __init__(
        self,
        pieces=("Hello", " there", ".", " How", " are", " you?"),
        delay_s: float = 0.0,
        name: str = "fake",
        fail_before: Exception | None = None,
        fail_after: int | None = None,
        images: bool = True,
        audio: bool = True,
    ):
        self.pieces, self.delay_s, self.name = pieces, delay_s, name
        self.capabilities = Capabilities(images=images, audio=audio, context_length=4096)
        self.sampling = None
        self.fail_before, self.fail_after = fail_before, fail_after
        self.calls: list = []  # (conversation, config)
        self.freed = threading.Event()  # set when a stream's generator finished or was closed
        self.streaming = threading.Event()

    def stream(self, conversation, config, cancel=None, info=None):
        info = info if info is not None else ReplyInfo()
        self.calls.append((conversation, config))
        self.freed.clear()
        started = time.perf_counter()

        def generate():
            try:
                if self.fail_before:
                    raise self.fail_before
                info.prompt_tokens, info.observations = 10, ["image 1: colors: red"]
                pieces = self.pieces(len(self.calls)) if callable(self.pieces) else self.pieces
                for number, piece in enumerate(pieces):
                    if cancel is not None and cancel.is_set():
                        info.finish_reason = "cancelled"
                        return
                    if self.fail_after is not None and number == self.fail_after:
                        raise RuntimeError("the GPU caught fire")
                    if self.delay_s:
                        time.sleep(self.delay_s)
                    if info.time_to_first_token_s is None:
                        info.time_to_first_token_s = time.perf_counter() - started
                    info.new_tokens += 1
                    self.streaming.set()
                    yield piece
                info.finish_reason = "stop"
            finally:
                info.total_time_s = time.perf_counter() - started
                self.freed.set()

        return generate()


def tiny_wav(seconds: float = 0.2, rate: int = 16000) -> bytes:
    buffer = io.BytesIO()
    with wave.open(buffer, "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(rate)
        out.writeframes(b"\x00\x00" * int(seconds * rate))
    return buffer.getvalue()


class FakeSpeech:
    """What `chat_app.speech.Speech` does, without Whisper or espeak-ng."""

    def __init__(
        self,
        transcript: str | None = "what is in this picture",
        fail: Exception | None = None,
        warnings: tuple[str, ...] = (),
    ):
        self.transcript, self.fail, self.warnings = transcript, fail, warnings
        self.asr_problem = self.tts_problem = None
        self.spoken: list[str] = []
        self.heard: list[tuple[str, bool]] = []  # (name, uploaded) of each sound transcribed

    def transcribe(self, data: bytes, name: str = "the recording", uploaded: bool = False):
        self.heard.append((name, uploaded))
        if self.fail:
            raise self.fail
        return self.transcript, self.warnings

    def synthesize(self, sentence: str) -> bytes:
        self.spoken.append(sentence)
        return tiny_wav()

    def chunker(self):
        from engine.speech.tts import SentenceChunker

        return SentenceChunker()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Server:
    """The app served by `python -m chat_app.serve` in a subprocess (its output in `log`)."""

    def __init__(self, model_dir: Path, data_dir: Path, *extra: str, env: dict | None = None):
        self.model_dir, self.data_dir, self.extra = Path(model_dir), Path(data_dir), list(extra)
        self.env = env or {}
        self.port = free_port()
        self.process: subprocess.Popen | None = None
        self.log_path = self.data_dir.parent / f"server-{self.port}.log"

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/"

    def start(self, timeout_s: float = 120) -> Server:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        env = dict(os.environ, PYTHONUNBUFFERED="1", GRADIO_ANALYTICS_ENABLED="False", **self.env)
        command = [
            sys.executable,
            "-m",
            "chat_app.serve",
            "--model",
            str(self.model_dir),
            "--data-dir",
            str(self.data_dir),
            "--port",
            str(self.port),
            *self.extra,
        ]
        self._log = open(self.log_path, "ab")
        self.process = subprocess.Popen(command, cwd=ROOT, env=env, stdout=self._log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"the server exited with {self.process.returncode}:\n{self.log}")
            try:
                if httpx.get(self.url + "config", timeout=2).status_code in (200, 401):
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(0.3)
        self.stop()
        raise RuntimeError(f"the server did not answer within {timeout_s} s:\n{self.log}")

    @property
    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def stop(self, kill: bool = False) -> None:
        if self.process and self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL if kill else signal.SIGTERM)
            try:
                self.process.wait(20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)
        if getattr(self, "_log", None):
            self._log.close()
            self._log = None

    def restart(self, kill: bool = True) -> Server:
        """Stop (SIGKILL by default: a crash) and start again on the same data dir."""
        self.stop(kill=kill)
        self.port = free_port()
        return self.start()


__all__ = ["FakeBackend", "FakeSpeech", "Server", "free_port", "tiny_wav", "InputError"]

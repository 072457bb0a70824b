"""The voice conversation loop: listen (push-to-talk or hands-free), transcribe, reply, speak.

    loop = VoiceLoop(backend, transcriber, microphone, keys, sink, VoiceOptions(hands_free=True))
    loop.run()                  # until "quit" / "eof" (push-to-talk) / options.max_turns recordings
    loop.conversation           # the turns so far (a turn that failed leaves it unchanged)
    loop.reports                # TurnReport per answered turn: transcript, reply, interrupted, latencies

Everything is injected: `microphone` has read(timeout) and drain() returning 16 kHz chunks,
`keys` is a queue of "enter" | "mute" | "quit" | "eof", `sink` has play(), stop(), reset()
(None: text only). Barge-in: while a reply streams or plays, speech heard on the microphone
(or Enter, or q) cancels generation and stops playback; in hands-free mode that speech
starts the next turn.
"""

from __future__ import annotations

import collections
import queue
import sys
import threading
import time
from dataclasses import dataclass

import numpy as np

from chat_app.voice.devices import BLOCK, SAMPLE_RATE
from engine.speech.reply import speech_turn, spoken_reply
from engine.speech.tts import DEFAULT_VOICE, wav_bytes
from engine.speech.turns import TurnTaker
from engine.speech.vad import EndOfSpeech
from engine.types import AudioError, Conversation, EngineError, GenerationConfig


@dataclass
class VoiceOptions:
    hands_free: bool = False
    min_silence_ms: int = 700  # hands-free: a pause this long ends the turn
    vad_threshold: float = 0.5  # hands-free: speech sensitivity (lower hears quieter speech)
    speak: bool = True
    barge_in: bool = True
    voice: str = DEFAULT_VOICE
    max_turns: int | None = None  # stop after this many recordings
    max_record_s: float = 120.0
    timings: bool = False


@dataclass
class TurnReport:
    transcript: str = ""
    reply: str = ""
    interrupted: bool = False
    speech_ended_at: float = 0.0  # time.perf_counter() values
    transcribed_at: float | None = None
    first_token_at: float | None = None
    first_audio_at: float | None = None
    reply_done_at: float | None = None

    def after_speech(self, moment: float | None) -> float | None:
        return None if moment is None else moment - self.speech_ended_at


class VoiceLoop:
    def __init__(
        self,
        backend,
        transcriber,
        microphone,
        keys: queue.Queue,
        sink=None,
        options: VoiceOptions = VoiceOptions(),
        generation: GenerationConfig = GenerationConfig(),
        system_prompt: str = "",
        out=None,
    ):
        self.backend, self.transcriber, self.microphone, self.keys, self.sink = (
            backend,
            transcriber,
            microphone,
            keys,
            sink,
        )
        self.options, self.generation, self.out = options, generation, out or sys.stdout
        self.conversation = Conversation(system_prompt)
        self.reports: list[TurnReport] = []
        self._pending: list[np.ndarray] = []  # speech heard during a barge-in: the next turn's start
        self._record_now = self._quit = self._muted = False
        self._speech_ended_at = 0.0

    def _say(self, text: str, end: str = "\n") -> None:
        self.out.write(text + end)
        self.out.flush()

    def _key(self, timeout: float = 0.0) -> str | None:
        try:
            key = self.keys.get(timeout=timeout) if timeout else self.keys.get_nowait()
        except queue.Empty:
            return None
        if key == "quit" or (key == "eof" and not self.options.hands_free):
            self._quit = True
        elif key == "mute" and self.options.hands_free:
            self._muted = not self._muted
            self._say("[muted: press m to listen again]" if self._muted else "[listening]")
        return key

    def run(self) -> int:
        """Listen and answer until quit (or max_turns recordings); returns the recordings handled."""
        turns = 0
        self.microphone.drain()  # what was heard while the models loaded is not a turn
        while not self._quit and (self.options.max_turns is None or turns < self.options.max_turns):
            recording = self._listen_hands_free() if self.options.hands_free else self._listen_push_to_talk()
            if recording is None:
                break
            turns += 1
            self.answer(recording)
        return turns

    def _listen_push_to_talk(self) -> np.ndarray | None:
        if not self._record_now:
            self._say("[press Enter to talk, q to quit]")
            while self._key(0.05) != "enter":
                self.microphone.drain()
                if self._quit:
                    return None
        self._record_now = False
        self.microphone.drain()
        self._say("[recording: press Enter to stop]")
        chunks, started = [], time.monotonic()
        while self._key() != "enter" and time.monotonic() - started < self.options.max_record_s:
            if self._quit:
                return None
            chunk = self.microphone.read(0.05)
            if chunk is not None:
                chunks.append(chunk)
        self._speech_ended_at = time.perf_counter()
        return np.concatenate(chunks) if chunks else np.zeros(0, np.float32)

    def _listen_hands_free(self) -> np.ndarray | None:
        taker = TurnTaker(
            self.transcriber,
            self.options.min_silence_ms,
            self.options.vad_threshold,
            max_seconds=self.options.max_record_s,
        )
        if not self._pending:
            self._say("[listening: just speak; m mutes, q quits]")
        while True:
            key = self._key()
            if self._quit:
                return None
            if self._muted:
                self.microphone.drain()
                taker.reset()
                time.sleep(0.05)
                continue
            chunk = self._pending.pop(0) if self._pending else self.microphone.read(0.1)
            if chunk is None:
                continue
            recording = taker.feed(chunk, force_end=key == "enter")
            if recording is not None:
                self._speech_ended_at = time.perf_counter() - taker.silence_after_speech_s
                return recording

    def answer(self, recording: np.ndarray) -> bool:
        """Transcribe one recording and speak the reply; False (conversation unchanged) on bad input."""
        report = TurnReport(speech_ended_at=self._speech_ended_at or time.perf_counter())
        if recording.size < BLOCK:
            self._say("[Nothing was recorded: press Enter, speak, then press Enter again.]")
            return False
        audio = wav_bytes(recording, SAMPLE_RATE)
        try:
            transcript = self.transcriber.transcribe(audio, require_speech=True, name="the recording")
        except AudioError as error:
            self._say(f"[{error}]")
            return False
        report.transcribed_at, report.transcript = time.perf_counter(), transcript.text
        self._say(f"you: {transcript.text}")
        for warning in transcript.warnings:
            self._say(f"[note: {warning}]")
        self.conversation.turns.append(speech_turn(self.backend, audio, transcript))
        reply = self._reply(report)
        if reply is None:
            self.conversation.turns.pop()
            return False
        self.conversation.add("assistant", reply)
        self.reports.append(report)
        if self.options.timings:
            numbers = [
                (label, report.after_speech(moment))
                for label, moment in (
                    ("transcript", report.transcribed_at),
                    ("first token", report.first_token_at),
                    ("first sound", report.first_audio_at),
                )
            ]
            self._say(
                "[after you stopped: "
                + ", ".join(f"{label} {value:.2f} s" for label, value in numbers if value is not None)
                + "]"
            )
        return True

    def _reply(self, report: TurnReport) -> str | None:
        cancel, done, sounds = threading.Event(), threading.Event(), queue.Queue()
        if self.sink is not None:
            self.sink.reset()
        player = threading.Thread(target=self._play, args=(sounds, cancel, report), daemon=True)
        watcher = threading.Thread(target=self._watch, args=(cancel, done), daemon=True)
        player.start()
        watcher.start()
        pieces = []
        self._say("bot: ", end="")
        try:
            for event in spoken_reply(
                self.backend,
                self.conversation,
                self.generation,
                cancel=cancel,
                speak=self.options.speak and self.sink is not None,
                voice=self.options.voice,
            ):
                if event.kind == "text":
                    report.first_token_at = report.first_token_at or event.at
                    pieces.append(event.text)
                    self._say(event.text, end="")
                else:
                    sounds.put(event)
        except EngineError as error:
            cancel.set()
            self._say(f"\n[error: {error}]")
            return None
        finally:
            sounds.put(None)
            player.join()
            done.set()
            watcher.join()
        report.reply_done_at, report.reply, report.interrupted = time.perf_counter(), "".join(pieces), cancel.is_set()
        self._say("\n[interrupted]" if report.interrupted else "")
        return report.reply

    def _play(self, sounds: queue.Queue, cancel: threading.Event, report: TurnReport) -> None:
        while (event := sounds.get()) is not None:
            if not cancel.is_set():
                report.first_audio_at = report.first_audio_at or time.perf_counter()
                self.sink.play(event.waveform, event.sample_rate)

    def _watch(self, cancel: threading.Event, done: threading.Event) -> None:
        """While the reply streams and plays: Enter, q or (with barge-in) speech interrupts it."""
        detector = EndOfSpeech(threshold=max(self.options.vad_threshold, 0.6), min_speech_ms=250)
        recent = collections.deque(maxlen=40)  # 1.3 s: the start of the next turn
        self.microphone.drain()
        while not done.is_set():
            key = self._key()
            chunk = self.microphone.read(0.05)
            if chunk is not None and self.options.barge_in and not self._muted:
                recent.append(chunk)
                detector.feed(chunk)
            if key == "enter" or self._quit or detector.speech_started:
                cancel.set()
                if self.sink is not None:
                    self.sink.stop()
                self._record_now = key == "enter"
                self._pending = list(recent) if detector.speech_started and self.options.hands_free else []
                return

"""Hands-free turn taking: a live 16 kHz stream cut into utterances, each transcribed early.

    taker = TurnTaker(transcriber, min_silence_ms=700, threshold=0.5)
    for chunk in microphone:                 # float32 mono chunks of any length
        recording = taker.feed(chunk)
        if recording is not None:            # speech, then a pause of min_silence_ms: one turn
            transcript = transcriber.transcribe(wav_bytes(recording, 16000))   # usually cached by now
            taker = TurnTaker(...)           # or taker.reset()

The recording keeps `preroll_s` of sound from before the speech was confirmed (Silero VAD
confirms it a little late; the first word is not clipped). Early transcription: once a pause
has lasted `early_ms` (300 ms: longer than most pauses at a comma), the recording so far is
transcribed in a background thread; if the pause becomes the end of the turn, `feed` returns
exactly that recording, so the transcription (cached by content) is already done or under
way. If speech resumes, the guess is dropped (one guess at a time; a stale one is not
cancelled, so pauses just over early_ms cost CPU). This hides up to min_silence_ms - early_ms
of recognition time.
"""

from __future__ import annotations

import collections
import threading

import numpy as np

from engine.speech.vad import SAMPLE_RATE, EndOfSpeech


class TurnTaker:
    def __init__(
        self,
        transcriber=None,
        min_silence_ms: int = 700,
        threshold: float = 0.5,
        preroll_s: float = 1.0,
        max_seconds: float = 120.0,
        early_ms: int = 300,
    ):
        self.transcriber, self.preroll_s, self.max_seconds = transcriber, preroll_s, max_seconds
        self.early_ms = min(early_ms, min_silence_ms // 2)
        self._worker: threading.Thread | None = None  # at most one early transcription at a time
        self.detector = EndOfSpeech(min_silence_ms=min_silence_ms, threshold=threshold)
        self.reset()

    def reset(self) -> None:
        self.detector.reset()
        self._before: collections.deque = collections.deque()
        self._before_samples = 0
        self._chunks: list[np.ndarray] = []
        self._samples = 0
        self._early: np.ndarray | None = None  # the recording being transcribed early

    @property
    def speech_started(self) -> bool:
        return self.detector.speech_started

    @property
    def silence_after_speech_s(self) -> float:
        """Seconds of audio fed since the speech ended (the pause so far)."""
        end = self.detector.speech_end_s
        return 0.0 if end is None else max(0.0, self.detector.seconds_fed - end)

    def feed(self, chunk, force_end: bool = False) -> np.ndarray | None:
        """The finished recording once the turn has ended (or `force_end` after speech), else None."""
        chunk = np.asarray(chunk, dtype=np.float32).reshape(-1)
        was_speech = self.detector.speech_started
        self.detector.feed(chunk)
        if not self.detector.speech_started:
            self._before.append(chunk)
            self._before_samples += chunk.size
            while self._before and self._before_samples - self._before[0].size >= self.preroll_s * SAMPLE_RATE:
                self._before_samples -= self._before.popleft().size
            return None
        if not was_speech:
            self._chunks, self._samples = list(self._before), self._before_samples
        self._chunks.append(chunk)
        self._samples += chunk.size
        pause_ms = self.silence_after_speech_s * 1000
        if pause_ms == 0.0:
            self._early = None  # speech goes on: the early guess is stale
        elif (
            self._early is None
            and pause_ms >= self.early_ms
            and not self.detector.ended
            and not (self._worker and self._worker.is_alive())
        ):
            self._early = np.concatenate(self._chunks)
            if self.transcriber is not None:
                self._transcribe_in_background(self._early)
        if self.detector.ended or force_end or self._samples > self.max_seconds * SAMPLE_RATE:
            return self._early if self._early is not None and self.detector.ended else np.concatenate(self._chunks)
        return None

    def _transcribe_in_background(self, recording: np.ndarray) -> None:
        from engine.speech.tts import wav_bytes

        def work():
            try:
                self.transcriber.transcribe(wav_bytes(recording, SAMPLE_RATE), name="the recording")
            except Exception:  # noqa: BLE001 - the real call reports it
                pass

        self._worker = threading.Thread(target=work, daemon=True, name="early-asr")
        self._worker.start()

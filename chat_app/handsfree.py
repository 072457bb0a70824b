"""Hands-free voice: the live microphone stream cut into turns by voice activity.

    listener = Listener()
    for sample_rate, samples in chunks:          # what gr.Audio(streaming=True) sends
        wav = listener.push(sample_rate, samples)
        if wav is not None:                      # speech, then a pause: one turn
            send(wav)

Voice activity comes from `engine.speech.vad.EndOfSpeech` (Silero VAD): a turn starts with
speech and ends after `min_silence_ms` of silence; it keeps `preroll_s` of sound before the
speech so the first word is not clipped. While muted (or while a reply is running) the
microphone's sound is dropped. numpy only; nothing here imports gradio or torch.

    path = save_utterance(listener, chunk, quiet=muted, scratch=settings.scratch)   # the web app's glue
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np

from engine.speech.tts import wav_bytes

VAD_RATE = 16000


def to_mono_float(samples: np.ndarray) -> np.ndarray:
    """int16/int32/float, (n,) or (n, channels) → float32 mono in [-1, 1]."""
    samples = np.asarray(samples)
    if samples.dtype.kind in "iu":
        bits = 16 if samples.dtype.itemsize <= 2 else 8 * samples.dtype.itemsize
        samples = samples.astype(np.float64) / float(2 ** (bits - 1))
    if samples.ndim == 2:
        samples = samples.mean(axis=1)
    return np.clip(np.asarray(samples, dtype=np.float32), -1.0, 1.0)


def resample(samples: np.ndarray, rate: int, target: int = VAD_RATE) -> np.ndarray:
    """Linear resampling: good enough for voice activity, not for the model (it gets the WAV)."""
    if rate == target or samples.size == 0:
        return samples
    count = max(1, int(round(samples.size * target / rate)))
    return np.interp(np.linspace(0, samples.size - 1, count), np.arange(samples.size), samples).astype(np.float32)


class Listener:
    """One browser's live microphone, cut into utterances."""

    def __init__(
        self,
        min_silence_ms: int = 700,
        threshold: float = 0.5,
        preroll_s: float = 0.4,
        tail_s: float = 0.3,
        max_turn_s: float = 60.0,
        idle_keep_s: float = 10.0,
        detector=None,
    ) -> None:
        if detector is None:
            from engine.speech.vad import EndOfSpeech

            detector = EndOfSpeech(min_silence_ms=min_silence_ms, threshold=threshold)
        self.detector = detector
        self.preroll_s, self.tail_s, self.max_turn_s, self.idle_keep_s = preroll_s, tail_s, max_turn_s, idle_keep_s
        self.rate: int | None = None
        self._chunks: list[np.ndarray] = []
        self._samples = 0

    def reset(self) -> None:
        self.detector.reset()
        self._chunks, self._samples = [], 0

    @property
    def hearing_speech(self) -> bool:
        return bool(self.detector.speech_started)

    def push(self, rate: int, samples: np.ndarray) -> bytes | None:
        """Feed a chunk; returns a WAV of the utterance when a turn has just ended."""
        mono = to_mono_float(samples)
        if self.rate is not None and rate != self.rate:
            self.reset()
        self.rate = rate
        self._chunks.append(mono)
        self._samples += mono.size
        ended = self.detector.feed(resample(mono, rate))
        seconds = self._samples / rate
        if not self.detector.speech_started and seconds > self.idle_keep_s:
            self.reset()  # silence only: keep memory bounded
            return None
        if not ended and not (self.detector.speech_started and seconds > self.max_turn_s):
            return None
        audio = np.concatenate(self._chunks)
        start = max(0.0, (self.detector.speech_start_s or 0.0) - self.preroll_s)
        end = (self.detector.speech_end_s or seconds) + self.tail_s
        utterance = audio[int(start * rate) : int(end * rate)]
        self.reset()
        return wav_bytes(utterance, rate) if utterance.size else None


def save_utterance(listener: Listener, chunk, quiet: bool, scratch: Callable[[str], Path]) -> str | None:
    """Feed one chunk of the live microphone (`(sample_rate, samples)` or None); when a turn has
    just ended, the path of its WAV in a new `scratch("voice-")` folder. While `quiet` (muted,
    or a reply is playing: do not hear ourselves) the sound is dropped."""
    if chunk is None:
        return None
    if quiet:
        listener.reset()
        return None
    rate, samples = chunk
    wav = listener.push(rate, samples)
    if wav is None:
        return None
    path = scratch("voice-") / "utterance.wav"
    path.write_bytes(wav)
    return str(path)

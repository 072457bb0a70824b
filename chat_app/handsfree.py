"""Hands-free voice: the live microphone stream cut into turns by voice activity.

    listener = Listener()
    for sample_rate, samples in chunks:          # what gr.Audio(streaming=True) sends
        heard = hear(listener, (sample_rate, samples), quiet=muted, busy=replying)
        if heard is not None:                    # speech, then the end of a thought: one turn
            send(heard.wav, replacing_the_last_turn=heard.replaces)

Voice activity comes from `engine.speech.vad.EndOfSpeech` (Silero VAD): a turn starts with
speech and ends after a pause long enough for the end of a thought, not a breath: at least
`min_silence_ms`, up to `max_silence_ms` after a speaker's own long pauses or after a few
words only (the detector's adaptive mode). It keeps `preroll_s` of sound before the speech so
the first word is not clipped.

Nothing said is lost: the microphone is heard while a reply runs too (the browser's echo
cancellation keeps a spoken reply out of it); only Mute drops the sound. A fragment that
ends while the turn before it is still being answered, less than `merge_gap_s` after it, is
the same thought: `hear` returns both as one recording with `replaces=True`, and the app
stops that reply and sends the whole thought instead. numpy only; nothing here imports
gradio or torch.

    heard = save_heard(listener, chunk, quiet, busy, scratch=settings.scratch)   # the web app's glue
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
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


@dataclass(frozen=True)
class Heard:
    """One turn heard: its WAV, and whether it replaces the turn before (the same thought)."""

    wav: bytes
    replaces: bool = False


class Listener:
    """One browser's live microphone, cut into utterances."""

    def __init__(
        self,
        min_silence_ms: int = 1000,
        max_silence_ms: int = 1400,
        threshold: float = 0.5,
        preroll_s: float = 0.4,
        tail_s: float = 0.3,
        max_turn_s: float = 60.0,
        idle_keep_s: float = 10.0,
        merge_gap_s: float = 2.5,
        detector=None,
    ) -> None:
        if detector is None:
            from engine.speech.vad import EndOfSpeech

            detector = EndOfSpeech(min_silence_ms=min_silence_ms, threshold=threshold, max_silence_ms=max_silence_ms)
        self.detector = detector
        self.preroll_s, self.tail_s, self.max_turn_s, self.idle_keep_s = preroll_s, tail_s, max_turn_s, idle_keep_s
        self.merge_gap_s = merge_gap_s
        self.rate: int | None = None
        self._chunks: list[np.ndarray] = []
        self._samples = 0
        self._clock = 0.0  # seconds of sound fed since the listener was made (never reset)
        self._since = 0.0  # the clock when the detector was last reset
        self.last: tuple[np.ndarray, float] | None = None  # the last turn's samples and when its speech ended
        # the turn just heard: (samples, when its speech started, when it ended), on the clock
        self.utterance: tuple[np.ndarray, float, float] | None = None

    def reset(self) -> None:
        self.detector.reset()
        self._chunks, self._samples = [], 0
        self._since = self._clock

    def forget(self) -> None:
        """Start afresh: no turn before this one to merge with (muted, or the sample rate changed)."""
        self.reset()
        self.last = None

    @property
    def hearing_speech(self) -> bool:
        return bool(self.detector.speech_started)

    def push(self, rate: int, samples: np.ndarray) -> bytes | None:
        """Feed a chunk; returns a WAV of the utterance when a turn has just ended."""
        mono = to_mono_float(samples)
        if self.rate is not None and rate != self.rate:
            self.forget()
        self.rate = rate
        self._chunks.append(mono)
        self._samples += mono.size
        self._clock += mono.size / rate
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
        spoke = (
            self._since + (self.detector.speech_start_s or 0.0),
            self._since + (self.detector.speech_end_s or seconds),
        )
        self.utterance = (utterance, *spoke) if utterance.size else None
        self.reset()
        return wav_bytes(utterance, rate) if utterance.size else None

    def hear(self, rate: int, samples: np.ndarray, busy: bool) -> Heard | None:
        """Feed a chunk; the turn when one has just ended. `busy`: the turn before is still being
        answered, so a fragment that follows it closely is merged with it (replaces=True)."""
        if self.push(rate, samples) is None or self.utterance is None:
            return None
        samples, start, end = self.utterance
        merge = busy and self.last is not None and start - self.last[1] < self.merge_gap_s
        if merge:
            before, before_end = self.last
            # the padding kept around each is about the pause between them; what was said is all there
            pause = np.zeros(int(0.3 * rate), dtype=np.float32)
            samples = np.concatenate([before, pause, samples])
        self.last = (samples, end)
        return Heard(wav_bytes(samples, rate), replaces=merge)


def hear(listener: Listener, chunk, quiet: bool, busy: bool = False) -> Heard | None:
    """One chunk of the live microphone (`(sample_rate, samples)` or None) → the turn heard, if one
    has just ended. While `quiet` (muted) the sound is dropped; `busy`: a reply is running."""
    if chunk is None:
        return None
    if quiet:
        listener.forget()
        return None
    rate, samples = chunk
    return listener.hear(rate, samples, busy)


def save_heard(listener: Listener, chunk, quiet: bool, busy: bool, scratch: Callable[[str], Path]) -> dict | None:
    """`hear`, with the turn's WAV saved in a new `scratch("voice-")` folder:
    {"path": ..., "replaces": bool} (what the web app's utterance state holds), or None."""
    heard = hear(listener, chunk, quiet, busy)
    if heard is None:
        return None
    path = scratch("voice-") / "utterance.wav"
    path.write_bytes(heard.wav)
    return {"path": str(path), "replaces": heard.replaces}

"""Voice activity detection: Silero VAD (the ONNX model faster-whisper ships), offline.

    speech_probabilities(wave) -> np.ndarray      one probability per 32 ms window
    speech_segments(wave, VadConfig()) -> list[Segment]   Segment(start, end) in seconds
    trim_silence(wave) -> np.ndarray              from the first speech to the last (padded)
    split_for_asr(wave, max_chunk_s=30) -> list[(offset_s, chunk)]   speech only, in chunks
    detector = EndOfSpeech(min_silence_ms=700, threshold=0.5)
    detector.feed(chunk) -> bool                  True once speech has started and then stopped
    EndOfSpeech(min_silence_ms=1000, max_silence_ms=1400)   adaptive: waits longer after a speaker's long pauses

Waveforms are mono float32 at 16 kHz, given as numpy arrays (or anything `np.asarray` takes).
`threshold` is the sensitivity (a window is speech when its probability is at least it);
`min_silence_ms` is how long a pause must last to end an utterance. The ONNX session is
created once per process and shared: onnxruntime sessions are safe to run from many threads,
and every stateful detector keeps its own recurrent state.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np

SAMPLE_RATE = 16000
WINDOW = 512  # samples per VAD decision (32 ms at 16 kHz), fixed by the model
CONTEXT = 64  # samples of the previous window the model sees with each window


@dataclass(frozen=True)
class VadConfig:
    threshold: float = 0.5  # speech when a window's probability is at least this (sensitivity)
    min_silence_ms: int = 700  # a pause at least this long ends a segment
    min_speech_ms: int = 200  # shorter bursts are ignored (clicks, coughs)
    speech_pad_ms: int = 200  # kept on each side of every segment
    max_segment_s: float = 30.0  # longer speech is split at its longest pause (Whisper's window)

    def __post_init__(self) -> None:
        if not 0.0 < self.threshold < 1.0:
            raise ValueError(f"VAD threshold must be between 0 and 1, not {self.threshold}")
        if self.min_silence_ms < 0 or self.min_speech_ms < 0 or self.speech_pad_ms < 0:
            raise ValueError("VAD durations must not be negative")


@dataclass(frozen=True)
class Segment:
    start: float  # seconds
    end: float

    @property
    def duration(self) -> float:
        return self.end - self.start


@functools.cache
def _session():
    from faster_whisper.vad import get_vad_model

    return get_vad_model().session


def _as_wave(wave) -> np.ndarray:
    wave = np.asarray(wave, dtype=np.float32)
    if wave.ndim != 1:
        raise ValueError(f"expected a mono waveform of shape (samples,), got {wave.shape}")
    return wave


def speech_probabilities(wave) -> np.ndarray:
    """Speech probability of each 32 ms window of a 16 kHz waveform: (samples,) -> (windows,)."""
    wave = _as_wave(wave)
    if wave.size == 0:
        return np.zeros(0, dtype=np.float32)
    padded = np.pad(wave, (0, -wave.size % WINDOW))
    windows = padded.reshape(-1, WINDOW)  # (N, 512)
    context = np.roll(windows[:, -CONTEXT:], 1, axis=0)  # (N, 64): the tail of the window before
    context[0] = 0.0
    batch = np.concatenate([context, windows], axis=1)  # (N, 576)
    state = np.zeros((1, 1, 128), dtype=np.float32)
    probs, _, _ = _session().run(None, {"input": batch, "h": state, "c": state})
    return np.asarray(probs, dtype=np.float32).reshape(-1)


def speech_segments(wave, config: VadConfig = VadConfig()) -> list[Segment]:
    """The stretches of speech in a 16 kHz waveform, padded, in seconds."""
    from faster_whisper.vad import VadOptions, get_speech_timestamps

    wave = _as_wave(wave)
    if wave.size < WINDOW:
        return []
    options = VadOptions(
        threshold=config.threshold,
        min_silence_duration_ms=config.min_silence_ms,
        min_speech_duration_ms=config.min_speech_ms,
        speech_pad_ms=config.speech_pad_ms,
        max_speech_duration_s=config.max_segment_s,
    )
    found = get_speech_timestamps(wave, options, sampling_rate=SAMPLE_RATE)
    return [Segment(s["start"] / SAMPLE_RATE, s["end"] / SAMPLE_RATE) for s in found]


def trim_silence(wave, config: VadConfig = VadConfig()) -> np.ndarray:
    """The waveform from its first speech to its last (padded); empty when nothing is speech."""
    wave = _as_wave(wave)
    segments = speech_segments(wave, config)
    if not segments:
        return wave[:0]
    return wave[int(segments[0].start * SAMPLE_RATE) : int(segments[-1].end * SAMPLE_RATE)]


def split_for_asr(wave, config: VadConfig = VadConfig(), max_chunk_s: float = 30.0) -> list[tuple[float, np.ndarray]]:
    """Speech only, grouped into chunks of at most `max_chunk_s`: [(offset_s, chunk)].

    Neighbouring segments are merged while the chunk (silence between them included) fits;
    long silences between chunks are dropped, so a long recording costs only its speech.
    """
    wave = _as_wave(wave)
    chunks: list[list[float]] = []
    for segment in speech_segments(wave, config):
        if chunks and segment.end - chunks[-1][0] <= max_chunk_s and segment.start - chunks[-1][1] < 2.0:
            chunks[-1][1] = segment.end
        else:
            chunks.append([segment.start, segment.end])
    return [(start, wave[int(start * SAMPLE_RATE) : int(end * SAMPLE_RATE)]) for start, end in chunks]


class EndOfSpeech:
    """Streaming end-of-utterance detector for hands-free mode, fed chunk by chunk.

    `feed(chunk)` returns True once speech (at least `min_speech_ms` of it) has been heard
    and then `min_silence_ms` of silence followed. `speech_started` turns True as soon as
    speech is heard (used for barge-in). Chunks may have any length; state carries over.

    Adaptive (with `max_silence_ms`): the end of a turn waits for the end of a thought, not a
    breath. The silence needed is `pause_factor` times the longest pause this speaker has
    already made inside the turn, kept between `min_silence_ms` and `max_silence_ms`; while
    less than `short_speech_ms` has been said ("And so…"), it is `max_silence_ms`.
    """

    def __init__(
        self,
        min_silence_ms: int = 700,
        threshold: float = 0.5,
        min_speech_ms: int = 200,
        max_silence_ms: int | None = None,
        pause_factor: float = 1.6,
        short_speech_ms: int = 1000,
    ):
        self.config = VadConfig(threshold=threshold, min_silence_ms=min_silence_ms, min_speech_ms=min_speech_ms)
        if max_silence_ms is not None and max_silence_ms < min_silence_ms:
            raise ValueError(f"max_silence_ms ({max_silence_ms}) is less than min_silence_ms ({min_silence_ms})")
        self.max_silence_ms, self.pause_factor, self.short_speech_ms = max_silence_ms, pause_factor, short_speech_ms
        self.reset()

    def reset(self) -> None:
        self._state = np.zeros((2, 1, 1, 128), dtype=np.float32)  # LSTM h and c
        self._context = np.zeros((1, CONTEXT), dtype=np.float32)
        self._pending = np.zeros(0, dtype=np.float32)
        self._windows = 0  # windows seen
        self._speech_run = 0  # consecutive speech windows (before speech is confirmed)
        self._silence_run = 0  # consecutive silent windows after speech
        self.speech_started = False
        self.ended = False
        self.speech_start_s: float | None = None  # when speech began, from the first sample fed
        self.speech_end_s: float | None = None  # when the last speech window ended
        self.longest_pause_ms = 0.0  # the longest pause inside this turn that speech followed

    @property
    def required_silence_ms(self) -> float:
        """How long the pause now going on must last to end the turn."""
        low, high = self.config.min_silence_ms, self.max_silence_ms
        if high is None:
            return low
        said_ms = 1000 * ((self.speech_end_s or 0.0) - (self.speech_start_s or 0.0))
        if said_ms < self.short_speech_ms:
            return high
        return min(high, max(low, self.pause_factor * self.longest_pause_ms))

    def probability(self, window: np.ndarray) -> float:
        batch = np.concatenate([self._context, window[None]], axis=1)  # (1, 576)
        prob, h, c = _session().run(None, {"input": batch, "h": self._state[0], "c": self._state[1]})
        self._state = np.stack([h, c])
        self._context = window[None, -CONTEXT:]
        return float(np.asarray(prob).reshape(-1)[0])

    def feed(self, chunk) -> bool:
        chunk = np.asarray(chunk, dtype=np.float32).reshape(-1)
        self._pending = np.concatenate([self._pending, chunk])
        window_s = WINDOW / SAMPLE_RATE
        neg_threshold = max(self.config.threshold - 0.15, 0.01)
        while self._pending.size >= WINDOW and not self.ended:
            window, self._pending = self._pending[:WINDOW], self._pending[WINDOW:]
            prob = self.probability(window)
            self._windows += 1
            now = self._windows * window_s
            if not self.speech_started:
                self._speech_run = self._speech_run + 1 if prob >= self.config.threshold else 0
                if self._speech_run * window_s * 1000 >= self.config.min_speech_ms:
                    self.speech_started = True
                    self.speech_start_s = now - self._speech_run * window_s
                    self.speech_end_s = now
                continue
            if prob >= neg_threshold:  # hysteresis: between the thresholds still counts as speech
                self.longest_pause_ms = max(self.longest_pause_ms, self._silence_run * window_s * 1000)
                self._silence_run = 0
                self.speech_end_s = now
            else:
                self._silence_run += 1
                self.ended = self._silence_run * window_s * 1000 >= self.required_silence_ms
        return self.ended

    @property
    def seconds_fed(self) -> float:
        return (self._windows * WINDOW + self._pending.size) / SAMPLE_RATE

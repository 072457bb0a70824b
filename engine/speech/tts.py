"""Spoken replies, offline: espeak-ng, sentence by sentence as the text streams.

    waveform, sample_rate = synthesize("Hello there.")   # float32 mono in [-1, 1], 22050 Hz
    chunker = SentenceChunker()
    chunker.push("Hello the") -> []; chunker.push("re. How") -> ["Hello there."]; chunker.flush() -> ["How"]
    for sentence, waveform, sample_rate in speak_stream(text_pieces):   # pieces from Backend.stream
        play(waveform, sample_rate)                     # the first sentence plays while the rest streams
    speaker = SentenceSpeaker(speak)                    # the loop behind speak_stream, for callers that
    speaker.push(piece) -> sounds; speaker.flush()      # interleave the sound with their own streaming
    wav_bytes(waveform, sample_rate) -> bytes           # 16-bit PCM WAV, for a browser <audio>

espeak-ng is Debian's `espeak-ng` package (run as a program, one short process per
sentence: about 20 ms on a laptop core). `SpeechSynthesisError` says what to install when
it is missing. Markdown marks (*, `, #, list bullets) are dropped before speaking.
"""

from __future__ import annotations

import functools
import io
import re
import shutil
import struct
import subprocess
import wave as wavefile
from collections.abc import Callable, Iterable, Iterator
from typing import TypeVar

import numpy as np

from engine.types import EngineError

DEFAULT_VOICE = "en-us"
DEFAULT_RATE_WPM = 175

_ENDS = ".!?…。！？"
_CLOSERS = "\"')]}»”’"
_ABBREVIATIONS = {"mr", "mrs", "ms", "dr", "prof", "st", "vs", "etc", "e.g", "i.e", "jr", "sr", "fig"}
Sound = TypeVar("Sound")
_MARKDOWN = re.compile(r"(\*\*|__|`+|^#+\s*|^\s*[-*+]\s+|^\s*\d+\.\s+(?=\S))", re.MULTILINE)


class SpeechSynthesisError(EngineError):
    """Speech cannot be synthesized (espeak-ng missing, unknown voice)."""


def speakable(text: str) -> str:
    """Text as it should be read aloud: markdown marks removed, whitespace collapsed."""
    return " ".join(_MARKDOWN.sub("", text).split())


def _parse_wav(data: bytes) -> tuple[np.ndarray, int]:
    """espeak-ng's --stdout WAV (its sizes may be placeholders) -> (float32 samples, rate)."""
    if data[:4] != b"RIFF" or data[8:12] != b"WAVE":
        raise SpeechSynthesisError("espeak-ng did not produce WAV audio.")
    position, rate, pcm = 12, 22050, b""
    while position + 8 <= len(data):
        kind, size = data[position : position + 4], struct.unpack("<I", data[position + 4 : position + 8])[0]
        body = position + 8
        if kind == b"fmt ":
            rate = struct.unpack("<I", data[body + 4 : body + 8])[0]
        elif kind == b"data":
            pcm = data[body : body + size] if body + size <= len(data) else data[body:]
            break
        position = body + size + (size & 1)
    samples = np.frombuffer(pcm[: len(pcm) // 2 * 2], dtype="<i2").astype(np.float32) / 32768.0
    return samples, rate


def _espeak() -> str:
    program = shutil.which("espeak-ng")
    if program is None:
        raise SpeechSynthesisError(
            "Spoken replies need espeak-ng: apt-get install espeak-ng (macOS: brew install espeak-ng)."
        )
    return program


@functools.lru_cache(maxsize=4)
def voices(program: str = "espeak-ng") -> frozenset[str]:
    """Names espeak-ng accepts for -v: languages, voice names and files (lower case)."""
    listing = subprocess.run([program, "--voices"], capture_output=True, text=True, timeout=30).stdout
    names = set()
    for line in listing.splitlines()[1:]:
        columns = line.split()
        if len(columns) >= 5:
            names.update({columns[1], columns[3], columns[4], columns[4].rsplit("/", 1)[-1]})
            names.update(re.findall(r"\(([^ )]+) \d+\)", line))
    return frozenset(name.lower() for name in names)


def synthesize(text: str, voice: str = DEFAULT_VOICE, rate_wpm: int = DEFAULT_RATE_WPM) -> tuple[np.ndarray, int]:
    """Speak `text` with espeak-ng: (waveform float32 (samples,), sample_rate)."""
    program = _espeak()
    if voice.split("+")[0].lower() not in voices(program):
        raise SpeechSynthesisError(f"espeak-ng has no voice {voice!r}. List the voices with `espeak-ng --voices`.")
    text = speakable(text)
    if not any(char.isalnum() for char in text):
        return np.zeros(0, dtype=np.float32), 22050
    result = subprocess.run(
        [program, "--stdout", "-v", voice, "-s", str(rate_wpm)], input=text.encode(), capture_output=True, timeout=60
    )
    if result.returncode != 0 or not result.stdout:
        message = result.stderr.decode(errors="replace").strip() or f"exit status {result.returncode}"
        raise SpeechSynthesisError(
            f"espeak-ng could not speak with voice {voice!r}: {message}. List the voices with `espeak-ng --voices`."
        )
    return _parse_wav(result.stdout)


def wav_bytes(waveform: np.ndarray, sample_rate: int) -> bytes:
    """A mono float waveform as a 16-bit PCM WAV file in memory."""
    pcm = (np.clip(np.asarray(waveform, dtype=np.float32), -1.0, 1.0) * 32767.0).astype("<i2")
    buffer = io.BytesIO()
    with wavefile.open(buffer, "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(sample_rate)
        out.writeframes(pcm.tobytes())
    return buffer.getvalue()


class SentenceChunker:
    """Turns streamed text pieces into complete sentences, each as soon as it ends.

    A sentence ends at . ! ? … (closing quotes/brackets included) followed by a space and a
    word that does not start in lower case, except after common abbreviations and single
    initials; or at a line break. A sentence
    longer than `clause_chars` is cut at its last , ; : and one longer than `max_chars` at
    its last space, so long sentences start playing early too. `flush()` returns the rest.
    """

    def __init__(self, clause_chars: int = 120, max_chars: int = 240):
        self.clause_chars, self.max_chars = clause_chars, max_chars
        self._buffer = ""

    def push(self, piece: str) -> list[str]:
        self._buffer += piece
        out = []
        while True:
            cut = self._next_cut()
            if cut is None:
                return out
            sentence, self._buffer = self._buffer[:cut].strip(), self._buffer[cut:].lstrip()
            if sentence:
                out.append(sentence)

    def flush(self) -> list[str]:
        rest, self._buffer = self._buffer.strip(), ""
        return [rest] if rest else []

    def _next_cut(self) -> int | None:
        text = self._buffer
        for i, char in enumerate(text):
            if char == "\n":
                return i + 1
            if char in _ENDS:
                end = i + 1
                while end < len(text) and (text[end] in _CLOSERS or text[end] in _ENDS):
                    end += 1
                after = end
                while after < len(text) and text[after] in " \t":
                    after += 1
                if after == end or self._abbreviation(text[:i]):
                    continue  # "3.5", "Dr. Smith", or the text stops right at the mark for now
                if after == len(text):
                    return None  # the next piece tells: "Stop!" and left / "Stop!" Then …
                if text[after] == "\n" or not text[after].islower():
                    return end
        if len(text) > self.clause_chars:
            clause = max(text.rfind(mark, 0, self.max_chars) for mark in (", ", "; ", ": "))
            if clause > 0:
                return clause + 1
        if len(text) > self.max_chars:
            space = text.rfind(" ", 0, self.max_chars)
            return space if space > 0 else self.max_chars
        return None

    @staticmethod
    def _abbreviation(before: str) -> bool:
        word = before.split()[-1].lower() if before.split() else ""
        word = word.lstrip("\"'([{")
        return word in _ABBREVIATIONS or (len(word) == 1 and word.isalpha() and word != "i")


class SentenceSpeaker:
    """The one sentence-to-speech loop: streamed text pieces in, each ended sentence's sound out.

    `speak(sentence)` makes the sound (whatever the caller plays: a waveform, WAV bytes, an
    event) or returns None for none; sentences without a letter or digit are never spoken.
    `push` and `flush` are lazy: a sentence is spoken when its sound is asked for.
    """

    def __init__(self, speak: Callable[[str], Sound | None], chunker: SentenceChunker | None = None):
        self.speak = speak
        self.chunker = chunker or SentenceChunker()

    def push(self, piece: str) -> Iterator[Sound]:
        """The sounds of the sentences this piece ends."""
        return self._spoken(self.chunker.push(piece))

    def flush(self) -> Iterator[Sound]:
        """The sound of what is left once the text is complete."""
        return self._spoken(self.chunker.flush())

    def _spoken(self, sentences: list[str]) -> Iterator[Sound]:
        for sentence in sentences:
            if any(ch.isalnum() for ch in sentence) and (sound := self.speak(sentence)) is not None:
                yield sound


def speak_stream(
    pieces: Iterable[str],
    voice: str = DEFAULT_VOICE,
    rate_wpm: int = DEFAULT_RATE_WPM,
    synthesize_fn: Callable[[str], tuple[np.ndarray, int]] | None = None,
    chunker: SentenceChunker | None = None,
) -> Iterator[tuple[str, np.ndarray, int]]:
    """(sentence, waveform, sample_rate) for each sentence of a streamed reply, as soon as it ends."""
    synthesize_one = synthesize_fn or (lambda text: synthesize(text, voice, rate_wpm))

    def speak(sentence: str) -> tuple[str, np.ndarray, int] | None:
        waveform, sample_rate = synthesize_one(sentence)
        return (sentence, waveform, sample_rate) if waveform.size else None

    speaker = SentenceSpeaker(speak, chunker)
    for piece in pieces:
        yield from speaker.push(piece)
    yield from speaker.flush()

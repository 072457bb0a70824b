"""A spoken turn in, a spoken reply out: the glue the desktop voice mode and the web app share.

    turn = speech_turn(backend, wav, transcript)     # Turn("user", …) carrying the audio itself
    for event in spoken_reply(backend, conversation, GenerationConfig(), cancel=event, speak=True):
        event.kind == "text"     -> event.text is the next piece of the reply (show it)
        event.kind == "speech"   -> event.text is a complete sentence, event.waveform /
                                    event.sample_rate its audio (play it; the rest still streams)

The transcript reaches the model once: through the "asr" observation when the model lists it
(the prompt adds "[audio 1: heard: …]" from the cached transcription), otherwise as the
turn's text. Backends without audio input get the transcript alone.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

from engine.speech.asr import Transcript
from engine.speech.tts import DEFAULT_RATE_WPM, DEFAULT_VOICE, SentenceSpeaker, synthesize
from engine.types import Conversation, GenerationConfig, ReplyInfo, Turn


@dataclass
class ReplyEvent:
    kind: str  # "text" | "speech"
    text: str
    waveform: np.ndarray | None = None
    sample_rate: int = 0
    at: float = 0.0  # time.perf_counter() when the event was produced


def speech_turn(backend, audio: bytes, transcript: Transcript) -> Turn:
    """The user's spoken turn: the audio for the model's audio encoder plus the transcript."""
    takes_audio = backend.capabilities.audio
    text = "" if takes_audio and backend.capabilities.transcribes_audio else transcript.text
    return Turn("user", text, audio=[audio] if takes_audio else [])


def spoken_reply(
    backend,
    conversation: Conversation,
    config: GenerationConfig = GenerationConfig(),
    cancel: threading.Event | None = None,
    info: ReplyInfo | None = None,
    speak: bool = True,
    voice: str = DEFAULT_VOICE,
    rate_wpm: int = DEFAULT_RATE_WPM,
) -> Iterator[ReplyEvent]:
    """Stream the reply's text pieces and, with `speak`, each sentence's audio as soon as it ends."""

    def speech(sentence: str) -> ReplyEvent | None:
        if not speak or (cancel and cancel.is_set()):
            return None
        waveform, sample_rate = synthesize(sentence, voice, rate_wpm)
        return ReplyEvent("speech", sentence, waveform, sample_rate, time.perf_counter()) if waveform.size else None

    speaker = SentenceSpeaker(speech)
    for piece in backend.stream(conversation, config, cancel=cancel, info=info):
        yield ReplyEvent("text", piece, at=time.perf_counter())
        yield from speaker.push(piece)
    yield from speaker.flush()

"""Speech for the web app: recognition of recorded turns and spoken replies, from `engine.speech`.

    speech = Speech()
    transcript, warnings = speech.transcribe(wav_bytes)     # None when nothing was said
    transcript, warnings = speech.transcribe(data, name="notes.wav", uploaded=True)   # a file's words
    speaker = sentence_speaker(speech)                      # None when spoken replies are off
    for wav in speaker.push(piece): play(wav)               # one WAV per finished sentence
    for wav in speaker.flush(): play(wav)

Missing pieces (faster-whisper, the bundled Whisper model, espeak-ng) turn the feature off
with a reason (`asr_problem`, `tts_problem`) instead of failing the turn. The live
microphone of hands-free mode is cut into turns by `chat_app.handsfree.Listener`.
"""

from __future__ import annotations

import logging
import re

from engine.types import EngineError, InputError

log = logging.getLogger(__name__)


class Speech:
    """Speech recognition and synthesis from `engine.speech`, loaded on first use."""

    def __init__(self) -> None:
        self.asr_problem: str | None = None
        self.tts_problem: str | None = None

    def transcribe(
        self, data: bytes, name: str = "the recording", uploaded: bool = False
    ) -> tuple[str | None, tuple[str, ...]]:
        """(transcript or None when nothing was said, warnings). Raises InputError for bad audio.
        `uploaded`: the sound is a file someone attached (named `name`), not the microphone's,
        and the warnings say so (no advice about a microphone for a file)."""
        if self.asr_problem:
            return None, ()
        try:
            from engine.speech.asr import get_transcriber

            transcript = get_transcriber().transcribe(data, name=name)
        except InputError:
            raise
        except (ImportError, EngineError) as error:
            self.asr_problem = str(error) or type(error).__name__
            log.warning("speech recognition is off: %s", self.asr_problem)
            return None, ()
        except Exception as error:  # noqa: BLE001 - one clip failing leaves the turn (and ASR) alive
            log.exception("speech recognition failed on a clip")
            return None, (f"Speech recognition failed on this recording ({error}); the model still gets the sound.",)
        warnings = tuple(about_a_file(w, name) for w in transcript.warnings) if uploaded else transcript.warnings
        return (transcript.text if transcript.heard else None), tuple(warnings)

    def synthesize(self, sentence: str) -> bytes | None:
        """One sentence as a WAV file in memory (None when spoken replies are off)."""
        if self.tts_problem:
            return None
        try:
            from engine.speech.tts import synthesize, wav_bytes

            waveform, sample_rate = synthesize(sentence)
        except (ImportError, EngineError, OSError) as error:
            self.tts_problem = str(error) or type(error).__name__
            log.warning("spoken replies are off: %s", self.tts_problem)
            return None
        return wav_bytes(waveform, sample_rate) if waveform.size else None

    def chunker(self):
        try:
            from engine.speech.tts import SentenceChunker
        except ImportError as error:
            self.tts_problem = str(error)
            return None
        return SentenceChunker()


ENCODER_START_S = 2.0  # how long the first sound of a spoken reply may wait for Gradio's AAC encoder


def let_the_audio_encoder_start() -> None:
    """Give Gradio's streaming-audio encoder time to emit its first frame.

    Gradio encodes a streamed sound with an ffmpeg process started with the stream's first chunk,
    and waits `STARTUP_WAIT` (0.1 s) for its first frame. ffmpeg took 0.13-0.23 s here, so the
    first chunk of a spoken reply almost always came back empty: the stream then opened with an
    empty playlist, and a browser that read it before the next sentence logged `levelEmptyError`.
    The wait ends as soon as a frame is out, so a longer limit costs only ffmpeg's real start.
    """
    try:
        import gradio.audio_stream_encoder as encoder
    except ImportError:  # another Gradio: nothing to adjust
        return
    if hasattr(encoder, "STARTUP_WAIT"):
        encoder.STARTUP_WAIT = max(encoder.STARTUP_WAIT, ENCODER_START_S)


def about_a_file(warning: str, name: str) -> str:
    """A speech recognizer's warning about a recording, worded for an uploaded file: a file
    that is silent needs no advice about the microphone."""
    if " is silent" in warning:
        return f"{name} is silent: there is no sound in the file. Check that it is the recording you meant to send."
    if "only noise" in warning:
        return f"No speech was heard in {name}, only noise."
    if warning.startswith("No speech was heard"):
        return f"No speech was heard in {name}."
    sentences = re.split(r"(?<=[.!?])\s+", warning)
    return " ".join(s for s in sentences if "microphone" not in s) or warning


def sentence_speaker(speech):
    """The reply's sentences as WAV bytes, through `speech` (Speech or a test double with its
    `synthesize` and `chunker`); None when spoken replies cannot start."""
    chunker = speech.chunker()
    if chunker is None:
        return None
    from engine.speech.tts import SentenceSpeaker

    return SentenceSpeaker(speech.synthesize, chunker)

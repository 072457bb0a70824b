"""Fixtures of the speech tests (the shared media of tests/conftest.py are used too).

passage_text, passage_wav_16k, passage_flac_44k_stereo, passage_webm_opus_48k, passage_mp3
                      four spoken sentences (espeak-ng, about 9 s) in the formats people produce
question_wav          "I can see a red circle and a blue square" (espeak-ng's own 22.05 kHz WAV)
interruption_wav      "what time is it in London" (the barge-in utterance)
two_utterances_wav    1 s silence, question, 4 s silence, interruption, 1 s silence (16 kHz)
clipped_wav           the quick brown fox, 10x too loud: about 14% of samples clipped
noisy_wav             the quick brown fox under white noise louder than the voice
transcriber           the process-wide Transcriber (bundled Whisper tiny.en)
tiny_model_dir        a tiny random checkpoint (engine.loading.save_checkpoint)
pulse                 a private PulseAudio server with a virtual microphone (see speech_helpers)
"""

from __future__ import annotations

import os

import pytest
from speech_helpers import INTERRUPTION_TEXT, PASSAGE_TEXT, QUESTION_TEXT, PulseAudio, run_tool


@pytest.fixture(scope="session")
def speech_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("speech")


def _espeak(path, text):
    run_tool("espeak-ng", "-w", path, text)
    return path


@pytest.fixture(scope="session")
def passage_text() -> str:
    return PASSAGE_TEXT


@pytest.fixture(scope="session")
def passage_espeak_wav(speech_dir):
    return _espeak(speech_dir / "passage_espeak.wav", PASSAGE_TEXT)


@pytest.fixture(scope="session")
def passage_wav_16k(speech_dir, passage_espeak_wav):
    path = speech_dir / "passage_16k.wav"
    run_tool("sox", "-D", passage_espeak_wav, "-r", "16000", "-c", "1", "-b", "16", path)
    return path


@pytest.fixture(scope="session")
def passage_flac_44k_stereo(speech_dir, passage_espeak_wav):
    path = speech_dir / "passage_44k_stereo.flac"
    run_tool("sox", "-D", passage_espeak_wav, "-r", "44100", "-c", "2", path)
    return path


@pytest.fixture(scope="session")
def passage_webm_opus_48k(speech_dir, passage_espeak_wav):
    path = speech_dir / "passage_48k.webm"
    with open(path, "wb") as out:  # to a pipe, as MediaRecorder writes it: no duration in the header
        run_tool(
            "ffmpeg",
            "-hide_banner",
            "-loglevel",
            "error",
            "-i",
            passage_espeak_wav,
            "-ar",
            "48000",
            "-c:a",
            "libopus",
            "-b:a",
            "32k",
            "-f",
            "webm",
            "pipe:1",
            stdout=out,
        )
    return path


@pytest.fixture(scope="session")
def passage_mp3(speech_dir, passage_espeak_wav):
    path = speech_dir / "passage.mp3"
    run_tool(
        "ffmpeg",
        "-hide_banner",
        "-loglevel",
        "error",
        "-y",
        "-i",
        passage_espeak_wav,
        "-c:a",
        "libmp3lame",
        "-b:a",
        "64k",
        path,
    )
    return path


@pytest.fixture(scope="session")
def question_wav(speech_dir):
    return _espeak(speech_dir / "question.wav", QUESTION_TEXT)


@pytest.fixture(scope="session")
def interruption_wav(speech_dir):
    return _espeak(speech_dir / "interruption.wav", INTERRUPTION_TEXT)


@pytest.fixture(scope="session")
def two_utterances_wav(speech_dir, question_wav, interruption_wav):
    parts = []
    for name, source in (("a", question_wav), ("b", interruption_wav)):
        parts.append(speech_dir / f"part_{name}.wav")
        run_tool("sox", "-D", source, "-r", "16000", "-c", "1", "-b", "16", parts[-1])
    first = speech_dir / "question_then_pause.wav"
    run_tool("sox", "-D", parts[0], first, "pad", "1", "4")  # 1 s before the question, 4 s after
    path = speech_dir / "two_utterances.wav"
    run_tool("sox", "-D", first, parts[1], path, "pad", "0", "1")
    return path


@pytest.fixture(scope="session")
def clipped_wav(speech_dir, speech_wav_16k):
    path = speech_dir / "clipped.wav"
    run_tool("sox", "-D", speech_wav_16k, path, "vol", "10")  # sox clips (and warns): what we want
    return path


@pytest.fixture(scope="session")
def noisy_wav(speech_dir, speech_wav_16k, speech_seconds):
    noise = speech_dir / "white_noise.wav"
    run_tool(
        "sox",
        "-R",
        "-D",
        "-n",
        "-r",
        "16000",
        "-c",
        "1",
        "-b",
        "16",
        noise,
        "synth",
        f"{speech_seconds:.3f}",
        "whitenoise",
        "vol",
        "0.65",
    )  # 0.6-0.7 drown the 130-wpm sentence for Whisper tiny.en; 0.5 does not
    path = speech_dir / "noisy.wav"
    run_tool("sox", "-D", "-m", speech_wav_16k, noise, path)
    return path


@pytest.fixture(scope="session")
def transcriber():
    from engine.speech.asr import get_transcriber

    return get_transcriber()


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory):
    from tiny_models import tiny_model, tiny_tokenizer

    from engine.loading import save_checkpoint

    return save_checkpoint(tmp_path_factory.mktemp("speech_model") / "tiny", tiny_model(seed=3), tiny_tokenizer())


@pytest.fixture(scope="session")
def pulse(tmp_path_factory):
    """A private PulseAudio server; PULSE_SERVER points at it for the rest of the session."""
    folder = tmp_path_factory.mktemp("pulse")
    server = PulseAudio.start(folder)
    previous = os.environ.get("PULSE_SERVER")
    os.environ["PULSE_SERVER"] = server.server
    yield server
    server.stop()
    if previous is None:
        os.environ.pop("PULSE_SERVER", None)
    else:
        os.environ["PULSE_SERVER"] = previous

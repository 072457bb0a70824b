"""The "asr" observation: what was said reaches the model as text beside the audio itself."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from tiny_models import tiny_backend, tiny_tokenizer

from engine.config import PRESETS, ModelConfig, preset
from engine.prompt import build_prompt
from engine.speech import asr
from engine.speech.reply import speech_turn
from engine.types import Conversation, GenerationConfig, ReplyInfo, Turn
from lab.speech.metrics import word_error_rate

ROOT = Path(__file__).resolve().parents[3]


def test_asr_is_an_observation_of_the_trained_presets():
    assert "asr" in PRESETS["small"].observations and "asr" in PRESETS["base"].observations
    assert ModelConfig(observations=("asr", "ocr")).observations == ("asr", "ocr")
    with pytest.raises(ValueError, match="'asr'"):
        ModelConfig(observations=("lip-reading",))


def test_each_clip_of_a_user_turn_adds_what_was_heard(speech_wav_16k, question_wav, speech_text):
    config = preset("tiny", vocab_size=tiny_tokenizer().vocab_size, observations=("asr",))
    turn = Turn("user", "Answer this.", audio=[speech_wav_16k, question_wav])
    prompt = build_prompt(Conversation(turns=[turn]), tiny_tokenizer(), config)
    assert [note.split(": heard: ")[0] for note in prompt.observations] == ["audio 1", "audio 2"]
    assert word_error_rate(speech_text, prompt.observations[0].split(": heard: ")[1]) <= 0.25
    assert "a red circle and a blue square" in prompt.observations[1].lower()
    assert len(prompt.audio) == 2  # the audio itself still goes to the audio encoder
    text = tiny_tokenizer().decode(prompt.ids)
    assert "[audio 2: heard: " in text and text.index("[audio 1: heard:") < text.index("Answer this.")


def test_images_keep_their_notes_when_asr_is_listed(image_png, silence_wav):
    config = preset("tiny", vocab_size=tiny_tokenizer().vocab_size, observations=("colors", "asr"))
    turn = Turn("user", "", images=[image_png], audio=[silence_wav])
    prompt = build_prompt(Conversation(turns=[turn]), tiny_tokenizer(), config)
    assert prompt.observations[0].startswith("image 1: colors: white")
    assert prompt.observations[1] == "audio 1: heard: (no speech)"


def test_the_app_and_the_prompt_transcribe_a_clip_once(monkeypatch, passage_mp3):
    calls = []
    real = asr.Transcriber._transcribe_wave
    monkeypatch.setattr(asr.Transcriber, "_transcribe_wave", lambda self, *a: calls.append(1) or real(self, *a))
    asr.default_transcriber().clear_cache()
    backend = tiny_backend(observations=("asr",))
    shown = asr.default_transcriber().transcribe(passage_mp3)  # what the app shows and stores
    info = ReplyInfo()
    conversation = Conversation(turns=[speech_turn(backend, passage_mp3.read_bytes(), shown)])
    "".join(backend.stream(conversation, GenerationConfig(max_new_tokens=4, temperature=0), info=info))
    assert calls == [1]
    assert info.observations == [f"audio 1: heard: {shown.text}"]


def test_the_transcript_is_sent_once(speech_wav_16k):
    transcript = asr.get_transcriber().transcribe(speech_wav_16k)
    with_asr, without = tiny_backend(observations=("asr",)), tiny_backend()
    assert with_asr.capabilities.transcribes_audio and not without.capabilities.transcribes_audio
    assert speech_turn(with_asr, b"wav", transcript).text == ""  # the observation carries it
    plain = speech_turn(without, b"wav", transcript)
    assert plain.text == transcript.text and plain.audio == [b"wav"]


def ask(*args):
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    return subprocess.run(
        [sys.executable, "launch.py", "ask", *map(str, args)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )


@pytest.mark.slow
def test_ask_reports_the_transcript_in_its_json(tiny_model_dir, speech_webm_opus_48k, silence_wav, speech_text):
    result = ask(
        "--model",
        tiny_model_dir,
        "--audio",
        speech_webm_opus_48k,
        "--audio",
        silence_wav,
        "--max-new-tokens",
        "4",
        "--json",
    )
    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout.strip().split("\n")[-1])
    assert word_error_rate(speech_text, summary["transcript"]) <= 0.25  # the silent clip adds nothing
    assert "heard in" in result.stderr and "silence.wav is silent" in result.stderr
    assert summary["timings"]["asr_s"] > 0 and "Traceback" not in result.stderr

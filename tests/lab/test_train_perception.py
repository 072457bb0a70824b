"""`python -m lab.train_vision` / `lab.train_hearing` for a few steps (the full runs are commands
people run), their resume, and that what they write is what the app's SmolLM2 backend loads."""

from __future__ import annotations

import random
import shutil
import wave

import numpy as np
import pytest
from PIL import Image

from engine.backends.lm import NO_SPEECH, NOTES_ADAPTERS, LMBackend
from engine.llm.perception import HearingConfig, VisionConfig
from engine.llm.tokenizer import AUDIO_MARK, IMAGE_MARK
from engine.types import Conversation, GenerationConfig, ReplyInfo, Turn
from lab import train_hearing, train_vision


def test_picture_examples_hold_the_tools_findings_and_answers_from_the_scene():
    from engine.observe import COLOR_NAMES

    rng = random.Random(3)
    for _ in range(6):
        example = train_vision.vision_example(rng, 48)
        content = example.messages[0]["content"]
        assert content.startswith(IMAGE_MARK + "\n[About picture 1") and example.images[0].shape == (3, 48, 48)
        assert example.answer and example.counts == [9] and (example.target is None or example.target.shape == (9, 2))
        assert any(colour in content for colour in COLOR_NAMES)  # the colour tool's finding is in the prompt


def test_sound_examples_say_what_the_recognizer_would_and_answer_from_the_clip():
    rng, config = random.Random(5), HearingConfig()
    answers = set()
    for _ in range(12):
        example = train_hearing.hearing_example(rng, config)
        content = example.messages[0]["content"]
        if NO_SPEECH in content:  # a clip without words: its audio tokens tell what it is
            assert content.startswith(AUDIO_MARK + "\n[Recording 1") and example.audio[0].shape[0] == config.n_mels
            assert example.counts == [config.tokens(example.audio[0].shape[-1])]
        else:  # speech: told by its words, as the app does
            assert content.startswith("[Recording 1") and not example.audio and not example.counts
        answers.add(example.answer)
    assert len(answers) >= 4


def tone(path) -> str:
    t = np.arange(16000) / 16000
    with wave.open(str(path), "wb") as out:
        out.setnchannels(1), out.setsampwidth(2), out.setframerate(16000)
        out.writeframes((0.5 * np.sin(2 * np.pi * 440 * t) * 32767).astype(np.int16).tobytes())
    return str(path)


@pytest.mark.slow
def test_a_few_steps_write_the_parts_that_the_backend_loads_and_resume(tmp_path, capsys):
    out = tmp_path / "adapters"
    shutil.copytree(NOTES_ADAPTERS, out, ignore=shutil.ignore_patterns("vision.*", "hearing.*"))
    for trainer, stem in ((train_vision, "vision"), (train_hearing, "hearing")):
        runs = tmp_path / f"runs-{stem}"
        args = ["--steps", "2", "--batch", "2", "--adapters", str(out), "--out", str(out), "--runs", str(runs)]
        assert trainer.main(args) == 0
        assert (out / f"{stem}.safetensors").stat().st_size > 500_000 and (runs / "loss.png").stat().st_size > 1000
        assert trainer.main(args[:1] + ["3"] + args[2:]) == 0  # one more step, from the saved state
        assert "resuming at step 2" in capsys.readouterr().out
    backend = LMBackend.smollm2("cpu", transcriber=lambda source: NO_SPEECH, adapters=out)
    assert backend.name == "smollm2-135m+notes+vision+hearing" and backend.vision.tokens == VisionConfig().tokens
    assert backend.vision.trained["steps"] == 3 and backend.hearing.trained["steps"] == 3
    picture = tmp_path / "p.png"
    Image.new("RGB", (64, 48), "white").save(picture)
    turn = Turn(role="user", text="What are these?", images=[str(picture)], audio=[tone(tmp_path / "t.wav")])
    reply = backend.stream(
        Conversation(turns=[turn]), GenerationConfig(temperature=0, max_new_tokens=8), info=ReplyInfo()
    )
    assert "".join(reply)

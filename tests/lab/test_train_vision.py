"""`python -m lab.train_vision` for a few steps (the full run is a command people run), its resume,
and that what it writes is what the app's SmolLM2 backend loads."""

from __future__ import annotations

import random
import shutil

import pytest

from engine.backends.lm import NOTES_ADAPTERS, LMBackend
from engine.llm.tokenizer import IMAGE_MARK
from engine.llm.vision import VISION_FILE, VisionConfig
from engine.types import Conversation, GenerationConfig, ReplyInfo, Turn
from lab import train_vision


def test_examples_hold_the_tools_findings_and_answers_from_the_scene():
    from engine.observe import COLOR_NAMES

    rng = random.Random(3)
    for _ in range(6):
        messages, answer, tensor, target = train_vision.vision_example(rng, 48)
        content = messages[0]["content"]
        assert content.startswith(IMAGE_MARK + "\n[About picture 1") and tensor.shape == (3, 48, 48)
        assert answer and (target is None or target.shape == (9, 2))
        assert any(colour in content for colour in COLOR_NAMES)  # the colour tool's finding is in the prompt


@pytest.mark.slow
def test_a_few_steps_write_the_image_path_that_the_backend_loads_and_resume(tmp_path, capsys):
    out, runs = tmp_path / "adapters", tmp_path / "runs"
    shutil.copytree(NOTES_ADAPTERS, out, ignore=shutil.ignore_patterns("vision.*"))
    args = ["--steps", "2", "--batch", "2", "--adapters", str(out), "--out", str(out), "--runs", str(runs)]
    assert train_vision.main(args) == 0
    assert (out / VISION_FILE).stat().st_size > 1_000_000 and (runs / "loss.png").stat().st_size > 1000
    assert train_vision.main(args[:1] + ["3"] + args[2:]) == 0  # one more step, from the saved state
    assert "resuming at step 2" in capsys.readouterr().out
    backend = LMBackend.smollm2("cpu", adapters=out)
    assert backend.name == "smollm2-135m+notes+vision" and backend.vision.tokens == VisionConfig().tokens
    assert backend.vision.trained["steps"] == 3
    picture = tmp_path / "p.png"
    from PIL import Image

    Image.new("RGB", (64, 48), "white").save(picture)
    conversation = Conversation(turns=[Turn(role="user", text="What do you see?", images=[str(picture)])])
    assert "".join(backend.stream(conversation, GenerationConfig(temperature=0, max_new_tokens=8), info=ReplyInfo()))

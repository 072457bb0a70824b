"""The shipped built-in model: present, small, loads offline, and really looks at the picture.

The scenes here are drawn from a seed the dataset never uses, so they are new to the model.
"""

import json
import os
import random
import subprocess
import sys
from pathlib import Path

import pytest

from engine.backends import DEFAULT_MODEL
from engine.backends.base import Sampling
from engine.backends.builtin import BuiltinBackend
from engine.types import Conversation, GenerationConfig, Turn
from lab.data.photos import DESCRIBE, HELDOUT_PHOTOS, available_photos
from lab.data.questions import make_question
from lab.data.scenes import random_scene, render_scene
from lab.evaluate import names_every_shape, says_something_true
from lab.metrics import exact_match

ROOT = Path(__file__).resolve().parents[2]
GREEDY = GenerationConfig(max_new_tokens=64, temperature=0.0)
pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def backend():
    return BuiltinBackend.from_directory(DEFAULT_MODEL, device="cpu")


@pytest.fixture(scope="module")
def new_scenes(tmp_path_factory):
    folder = tmp_path_factory.mktemp("new_scenes")
    scenes = []
    for i in range(24):
        scene = random_scene(random.Random(f"tests-only/{i}"))
        path = folder / f"{i}.png"
        render_scene(scene, 128).save(path)
        scenes.append((scene, path, i))
    return scenes


def ask(backend, question: str, image: Path) -> str:
    return backend.generate_batch([Conversation("", [Turn("user", question, images=[image])])], GREEDY)[0]


def test_the_builtin_model_is_shipped_small_and_complete():
    files = {p.name: p.stat().st_size for p in DEFAULT_MODEL.iterdir()}
    assert {"config.json", "model.safetensors", "tokenizer.json"} <= set(files)
    assert sum(files.values()) < 50 * 2**20
    config = json.loads((DEFAULT_MODEL / "config.json").read_text())
    assert set(config["observations"]) == {"ocr", "faces", "colors", "asr"}


def test_it_asks_to_be_decoded_greedily_as_it_was_evaluated(backend):
    assert backend.sampling == Sampling(temperature=0.0, top_p=1.0)


def answered(backend, new_scenes, qtype) -> tuple[int, int]:
    """(right, asked) for one question type on the new scenes."""
    right = asked = 0
    for scene, path, i in new_scenes:
        qa = make_question(scene, random.Random(f"tests-only/{i}/{qtype}"), qtype)  # the same, however run
        if qa.qtype != qtype:
            continue
        question, answer = qa.turns[0]
        right += exact_match(ask(backend, question, path), answer)
        asked += 1
    return right, asked


# What the shipped model does on the held-out data (`python -m lab.evaluate`): word 100%, count
# 95.7%, shape 100%, colour 99.4%; on these 24 scenes (greedy, CPU): 24, 22, 24 and 24 of 24. These tests
# hold the model near issue 3's bars (word and count 85%, colour and shape 95%), with room for a sample
# of 24 (at least 21, 18, 22 and 22 of 24), far above chance (colour 10%, shape 17%, count ~20%).
@pytest.mark.parametrize(("qtype", "least"), [("word", 0.85), ("count", 0.75), ("color", 0.9), ("shape", 0.9)])
def test_it_answers_about_scenes_it_never_saw(backend, new_scenes, qtype, least):
    right, asked = answered(backend, new_scenes, qtype)
    assert asked >= 10 and right >= least * asked, f"{right} of {asked} {qtype} questions right"


def test_what_do_you_see_names_the_shapes_of_plain_scenes_it_never_saw(backend, tmp_path):
    """Issue 3's description check on 16 new plain scenes of 1-3 shapes (measured: 16 of 16)."""
    named = []
    for i in range(16):
        scene = random_scene(random.Random(f"tests-only/plain/{i}"), 1, 3, word_probability=0.0, backgrounds=("plain",))
        render_scene(scene, 128).save(path := tmp_path / f"{i}.png")
        named.append(names_every_shape(ask(backend, "What do you see?", path), scene.to_dict()))
    assert sum(named) >= 15, f"every shape named in {sum(named)} of 16 descriptions"


def test_it_says_something_true_about_photos_it_never_saw(backend):
    """Issue 3's photo check: each way of asking for a description of each photo kept out of
    training must pass on something the tools saw in it (a colour, its text, a face), nearly
    always in its opening sentence, which the model copies from the tools' notes (measured: 12
    of 12 descriptions, 11 of 12 openings)."""
    from engine import preprocess
    from engine.observe import observe_image

    photos = [photo for photo in available_photos() if photo.name in HELDOUT_PHOTOS]
    assert len(photos) == len(HELDOUT_PHOTOS), "scikit-image's sample photos are missing"
    untrue, true_openings = [], 0
    for photo in photos:
        seen = observe_image(preprocess.read_image(photo.path))
        for question in DESCRIBE:
            reply = ask(backend, question, photo.path)
            true_openings += says_something_true(reply.split(".")[0], seen)
            if not says_something_true(reply, seen):
                untrue.append(f"{photo.name}, {question!r}: {reply!r} (tools saw {seen.as_text()})")
    assert not untrue, "\n".join(untrue)
    asked = len(photos) * len(DESCRIBE)
    assert true_openings >= asked - 2, f"{true_openings} of {asked} descriptions open with something the tools saw"


def test_launch_ask_uses_it_offline(new_scenes):
    scene, path, _ = next((s, p, i) for s, p, i in new_scenes if s.word)
    result = subprocess.run(
        [
            sys.executable,
            "launch.py",
            "ask",
            "What does the text say?",
            "--image",
            str(path),
            "--json",
            "--model",
            str(DEFAULT_MODEL),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "HF_HUB_OFFLINE": "1"},
    )
    assert result.returncode == 0, result.stderr
    reply = json.loads(result.stdout.strip().splitlines()[-1])
    assert reply["reply"] == f"It says {scene.word.text}."

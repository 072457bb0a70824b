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
from engine.backends.builtin import BuiltinBackend
from engine.data.questions import describe, make_question
from engine.data.scenes import random_scene, render_scene
from engine.evaluate import names_every_shape
from engine.metrics import exact_match
from engine.types import Conversation, GenerationConfig, Turn

ROOT = Path(__file__).resolve().parents[1]
GREEDY = GenerationConfig(max_new_tokens=48, temperature=0.0)
pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def backend():
    return BuiltinBackend.from_directory(DEFAULT_MODEL, device="cpu")


@pytest.fixture(scope="module")
def new_scenes(tmp_path_factory):
    folder = tmp_path_factory.mktemp("new_scenes")
    scenes = []
    for i in range(24):
        rng = random.Random(f"tests-only/{i}")
        scene = random_scene(rng)
        path = folder / f"{i}.png"
        render_scene(scene, 128).save(path)
        scenes.append((scene, path, rng))
    return scenes


def ask(backend, question: str, image: Path) -> str:
    return backend.generate_batch([Conversation("", [Turn("user", question, images=[image])])], GREEDY)[0]


def test_the_builtin_model_is_shipped_small_and_complete():
    files = {p.name: p.stat().st_size for p in DEFAULT_MODEL.iterdir()}
    assert {"config.json", "model.safetensors", "tokenizer.json"} <= set(files)
    assert sum(files.values()) < 50 * 2 ** 20
    config = json.loads((DEFAULT_MODEL / "config.json").read_text())
    assert set(config["observations"]) == {"ocr", "faces", "colors", "asr"}


@pytest.mark.parametrize("qtype", ["color", "shape", "count"])
def test_it_answers_about_scenes_it_never_saw(backend, new_scenes, qtype):
    right = 0
    for scene, path, rng in new_scenes:
        qa = make_question(scene, rng, qtype)
        question, answer = qa.turns[0]
        right += exact_match(ask(backend, question, path), answer) if qa.qtype == qtype else 1
    assert right >= 0.75 * len(new_scenes), f"{right} of {len(new_scenes)} {qtype} questions right"


def test_what_do_you_see_names_every_shape_with_its_colour(backend, new_scenes):
    plain = [(s, p) for s, p, _ in new_scenes if s.background == "plain" and 1 <= len(s.shapes) <= 3]
    named = sum(names_every_shape(ask(backend, "What do you see?", p), s.to_dict()) for s, p in plain)
    assert plain and named >= 0.75 * len(plain), [describe(s) for s, _ in plain]


def test_launch_ask_uses_it_offline(new_scenes):
    scene, path, _ = next((s, p, r) for s, p, r in new_scenes if len(s.shapes) == 1)
    result = subprocess.run([sys.executable, "launch.py", "ask", "What color is the shape?", "--image", str(path),
                             "--json"], cwd=ROOT, capture_output=True, text=True, timeout=300,
                            env={**os.environ, "HF_HUB_OFFLINE": "1"})
    assert result.returncode == 0, result.stderr
    reply = json.loads(result.stdout)
    assert scene.shapes[0].color in reply["reply"]

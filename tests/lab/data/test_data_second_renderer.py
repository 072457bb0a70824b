"""The second renderer: independent of the training generator, yet described in the same words."""

from __future__ import annotations

import ast
import inspect
import random
from collections import Counter

import numpy as np

from engine.observe import COLOR_NAMES
from engine.preprocess import image_to_tensor
from lab.data import second_renderer
from lab.data.questions import make_question
from lab.data.scenes import SHAPE_COLORS, SHAPES
from lab.data.second_renderer import CANVASES, PALETTE, second_scene
from lab.data.variety import nearest_name

PLAIN = [second_scene(random.Random(f"second-test/plain/{i}"), "plain") for i in range(40)]
HARD = [second_scene(random.Random(f"second-test/hard/{i}"), "hard") for i in range(40)]


def test_same_seed_same_scene_and_pixels():
    for setting in ("plain", "hard"):
        (a, image_a), (b, image_b) = (second_scene(random.Random(f"again/{setting}"), setting) for _ in range(2))
        assert a == b and np.array_equal(np.asarray(image_a), np.asarray(image_b))


def test_its_own_colour_values_under_the_same_names():
    assert set(PALETTE) == set(SHAPE_COLORS)
    for name, rgb in PALETTE.items():
        assert tuple(rgb) != tuple(COLOR_NAMES[name]), f"{name} uses the training generator's exact value"
        assert nearest_name(rgb) == name
    training_values = {tuple(v) for v in COLOR_NAMES.values()}
    drawn = set()
    for scene, image in PLAIN + HARD:
        pixels = np.asarray(image)
        for shape in scene.shapes:
            x, y = shape.center
            drawn.add(tuple(int(c) for c in pixels[round(y * (pixels.shape[0] - 1)), round(x * (pixels.shape[1] - 1))]))
    assert len(drawn) >= 10 and not drawn & training_values, "a shape drawn in the training palette's exact colour"


def test_it_draws_with_opencv_and_none_of_the_training_drawing_code():
    source = inspect.getsource(second_renderer)
    imported = {
        alias.name if isinstance(node, ast.Import) else f"{node.module}.{alias.name}"
        for node in ast.walk(ast.parse(source))
        if isinstance(node, (ast.Import, ast.ImportFrom))
        for alias in node.names
    }
    assert "cv2" in imported
    assert not {"PIL.ImageDraw", "lab.data.scenes.render_scene", "lab.data.scenes.shape_polygon"} & imported
    assert not any(name.startswith(("lab.data.variety", "matplotlib")) for name in imported)
    assert {n for n in imported if n.startswith("lab.data.scenes.")} <= {
        "lab.data.scenes.SHAPE_COLORS",
        "lab.data.scenes.SHAPES",
        "lab.data.scenes.Scene",
        "lab.data.scenes.Shape",
    }


def test_plain_scenes_are_the_bars_setting_and_their_description_is_exact():
    for scene, image in PLAIN:
        pixels = np.asarray(image)
        height, width = pixels.shape[:2]
        assert (width, height) in CANVASES["plain"] and width * 3 == height * 4
        assert 1 <= len(scene.shapes) <= 3 and scene.background == "plain"
        assert (pixels[0, 0] == 255).all() and (pixels[-1, -1] == 255).all()
        cells = [(s.row, s.col) for s in scene.shapes]
        assert len(set(cells)) == len(cells), "two shapes in one third"
        assert [(s.col, s.row) for s in scene.shapes] == sorted((s.col, s.row) for s in scene.shapes)
        for shape in scene.shapes:
            assert shape.kind in SHAPES
            x, y = shape.center
            assert (min(int(x * 3), 2), min(int(y * 3), 2)) == (shape.col, shape.row)
            centre = pixels[round(y * height), round(x * width)]
            assert tuple(centre) == PALETTE[shape.color], (shape, centre)


def test_hard_scenes_vary():
    kinds = Counter(scene.background for scene, _ in HARD)
    counts = Counter(len(scene.shapes) for scene, _ in HARD)
    sizes = Counter(image.size for _, image in HARD)
    assert len(kinds) >= 3 and kinds["photo"] > 0
    assert max(counts) >= 4 and min(counts) >= 1 and len(sizes) >= 3
    assert any(w < h for w, h in sizes), "portrait canvases too"


def test_every_canvas_passes_through_preprocessing():
    for _scene, image in PLAIN + HARD:
        assert tuple(image_to_tensor(image, 48).shape) == (3, 48, 48)


def test_questions_can_be_asked_about_it():
    for i, (scene, _) in enumerate(PLAIN + HARD):
        for qtype in ("color", "shape", "count", "describe"):
            qa = make_question(scene, random.Random(i), qtype)
            assert qa.answer
        described = make_question(scene, random.Random(i), "describe").answer
        assert all(f"{s.color} {s.kind}" in described for s in scene.shapes)

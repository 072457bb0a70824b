"""Generated scenes: the pixels match the spec, answers name what is drawn."""

from __future__ import annotations

import math
import random

import numpy as np
import pytest

from engine.observe import COLOR_NAMES
from engine.preprocess import image_to_tensor
from lab.data import questions
from lab.data.questions import QTYPES, describe, make_question, named_by, references, scene_questions
from lab.data.scenes import (
    COLUMNS,
    MIN_CONTRAST,
    ROWS,
    SHAPE_COLORS,
    SHAPES,
    SIZES,
    Scene,
    Shape,
    Word,
    random_scene,
    render_scene,
)

SCENES = [random_scene(random.Random(f"test/{i}")) for i in range(200)]


def test_scene_specs_are_reproducible_and_valid():
    again = [random_scene(random.Random(f"test/{i}")) for i in range(200)]
    assert again == SCENES
    for scene in SCENES:
        assert 1 <= len(scene.shapes) <= 5
        cells = [(s.row, s.col) for s in scene.shapes]
        assert len(set(cells)) == len(cells), "two shapes share a cell"
        if scene.word:
            assert all(s.row != scene.word.row for s in scene.shapes), "a shape is in the word's row"
        for shape in scene.shapes:
            assert shape.kind in SHAPES and shape.color in SHAPE_COLORS and shape.size in SIZES
            x, y = shape.center
            r = SIZES[shape.size] / 3  # radius as a fraction of the canvas
            assert shape.col / 3 <= x - r and x + r <= (shape.col + 1) / 3, "shape leaves its cell"
            assert shape.row / 3 <= y - r and y + r <= (shape.row + 1) / 3
            for background in scene.colors:
                assert math.dist(COLOR_NAMES[shape.color], background) >= MIN_CONTRAST
        assert Scene.from_dict(scene.to_dict()) == scene


def test_position_words_come_from_thirds():
    names = {(r, c): Shape("circle", "red", "small", r, c).position for r in range(3) for c in range(3)}
    assert names == {
        (0, 0): "top left",
        (0, 1): "top",
        (0, 2): "top right",
        (1, 0): "left",
        (1, 1): "center",
        (1, 2): "right",
        (2, 0): "bottom left",
        (2, 1): "bottom",
        (2, 2): "bottom right",
    }
    assert ROWS[0] == "top" and COLUMNS[2] == "right"


def test_rendered_shapes_have_their_colour_at_their_centre():
    size = 128
    for scene in SCENES[:60]:
        pixels = np.asarray(render_scene(scene, size)).astype(int)  # (H, W, 3)
        for shape in scene.shapes:
            x, y = shape.center
            centre = pixels[round(y * size), round(x * size)]
            assert np.abs(centre - COLOR_NAMES[shape.color]).max() <= 6, (shape, centre)


def test_shapes_are_told_apart_by_their_outline():
    """Each kind covers its own share of its bounding box (circle ~0.79, square ~0.94, star ~0.39, ...)."""
    shares, aspects = {}, {}
    for kind in SHAPES:
        scene = Scene(background="plain", colors=((255, 255, 255),), shapes=(Shape(kind, "black", "large", 1, 1),))
        dark = np.asarray(render_scene(scene, 256).convert("L")) < 128  # (256, 256)
        ys, xs = np.nonzero(dark)
        height, width = ys.max() - ys.min() + 1, xs.max() - xs.min() + 1
        shares[kind], aspects[kind] = dark.sum() / (height * width), width / height
    assert shares["square"] > 0.9
    assert 0.74 < shares["circle"] < 0.85
    assert 0.45 < shares["triangle"] < 0.55 and aspects["triangle"] > 1.1  # wider than tall
    assert 0.45 < shares["diamond"] < 0.55 and abs(aspects["diamond"] - 1) < 0.05
    assert shares["star"] < 0.45
    assert 0.55 < shares["cross"] < 0.7


def test_words_are_drawn_in_their_row_and_legible_at_64px():
    scene = Scene(
        background="plain",
        colors=((240, 240, 240),),
        shapes=(Shape("circle", "red", "small", 0, 0),),
        word=Word("HELLO", row=2, color="black"),
    )
    small = image_to_tensor(render_scene(scene, 128), 64)  # what the model sees: (3, 64, 64) in [-1, 1]
    dark = (small.mean(dim=0) < -0.3).numpy()  # (64, 64)
    rows = np.nonzero(dark.any(axis=1))[0]
    assert rows.min() >= 42 and rows.max() < 64, "the word is outside the bottom row"
    assert 8 <= rows.max() - rows.min() + 1 <= 20, "letters should be 8 to 20 px tall at 64 px"
    columns = np.nonzero(dark.any(axis=0))[0]
    assert columns.max() - columns.min() > 30, "the word should span about half the width"


def test_describe_names_every_shape_with_its_colour_in_order():
    for scene in SCENES:
        answer = describe(scene)
        position = 0
        for shape in scene.shapes:
            phrase = f"{shape.color} {shape.kind}"
            found = answer.lower().find(phrase, position)
            assert found >= 0, (phrase, answer)
            position = found + len(phrase)
        if scene.word:
            assert answer.endswith(f"the word {scene.word.text}.")
        order = [(s.col, s.row) for s in scene.shapes]
        assert order == sorted(order), "left to right, then top to bottom"


def test_answers_match_the_scene():
    for i, scene in enumerate(SCENES):
        for qtype in QTYPES:
            if qtype == "word" and not scene.word:
                continue
            qa = make_question(scene, random.Random(i), qtype)
            question, answer = qa.turns[0]
            if qa.qtype == "count" and question in ("How many shapes are there?", "How many shapes do you see?"):
                n = len(scene.shapes)
                words = ["no", "one", "two", "three", "four", "five"]
                assert answer == ("There is one shape." if n == 1 else f"There are {words[n]} shapes.")
            if qa.qtype == "word":
                assert answer == f"It says {scene.word.text}."
            if qa.qtype == "color":
                assert answer.removeprefix("It is ").removesuffix(".") in SHAPE_COLORS


def test_references_name_one_shape_only_and_followups_do_not_give_the_answer_away():
    for i, scene in enumerate(SCENES):
        for shape in scene.shapes:
            for ref in references(scene, shape):
                matching = [s for s in scene.shapes if _fits(ref, s)]
                assert matching == [shape], (ref, scene)
        qa = make_question(scene, random.Random(i), "followup")
        assert qa.qtype == "followup" and len(qa.turns) == 2
        (first_q, _), (_, last_a) = qa.turns
        fact = last_a.removeprefix("It is ").removeprefix("a ").removeprefix("an ").rstrip(".")
        assert fact not in first_q, qa.turns


def test_evaluation_tells_how_each_question_names_its_shape():
    seen = set()
    for i, scene in enumerate(SCENES[:60]):
        rng = random.Random(i)
        for shape in scene.shapes:
            for ref in references(scene, shape):
                expected = (
                    "place"
                    if ref.startswith("the shape ")
                    else {
                        f"the {shape.color} {shape.kind}": "colour and kind",
                        f"the {shape.color} shape": "colour",
                        f"the {shape.kind}": "kind",
                    }[ref]
                )
                for ask in (questions._color, questions._shape):
                    assert named_by(ask(scene, rng, shape, ref)[0]) == expected, ref
                seen.add(expected)
        if scene.shapes:
            question = make_question(scene, rng, "count").turns[0][0]
            expected = (
                "colour"
                if any(c in question.split() for c in SHAPE_COLORS)
                else "none"
                if any(w in question for w in ("shapes", "objects"))
                else "kind"
            )
            assert named_by(question) == expected, question
            seen.add(expected)
    assert seen == {"place", "colour and kind", "colour", "kind", "none"}


def _fits(ref: str, shape: Shape) -> bool:
    words = ref.removeprefix("the ")
    if words.startswith("shape "):
        return words == "shape " + {
            "left": "on the left",
            "right": "on the right",
            "top": "at the top",
            "bottom": "at the bottom",
        }.get(shape.position, f"in the {shape.position}")
    parts = words.split()
    return all(p in (shape.color, shape.kind, "shape") for p in parts) and (shape.kind in parts or shape.color in parts)


@pytest.mark.parametrize("count", [1, 2, 3])
def test_scene_questions_are_of_different_types(count):
    for i, scene in enumerate(SCENES[:50]):
        qas = scene_questions(scene, random.Random(i), count)
        assert len(qas) == count
        assert all(qa.qtype in QTYPES for qa in qas)
        assert len({qa.qtype for qa in qas}) == count or any(qa.qtype == "describe" for qa in qas)

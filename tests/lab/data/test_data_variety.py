"""Varied training scenes: seeded, every variation drawn, and the spec says what is visible."""

from __future__ import annotations

import hashlib
import json
import math
import random
from collections import Counter

import numpy as np
import pytest

from engine.observe import COLOR_NAMES
from engine.preprocess import image_to_tensor
from lab.data import BuildConfig, build_dataset, load_dataset
from lab.data import variety as V
from lab.data.questions import make_question
from lab.data.scenes import Scene, Shape, random_scene, render_scene


def _varied(i: int, **kwargs) -> Scene:
    return random_scene(random.Random(f"variety-test/{i}"), variety=True, **kwargs)


@pytest.fixture(scope="module")
def many() -> list[Scene]:
    return [_varied(i) for i in range(240)]


def test_the_plain_generator_is_unchanged():
    """Plain scenes' dicts carry none of the new fields, and specs are what they were (hash from
    before lab.data.variety existed)."""
    specs = [random_scene(random.Random(f"digest/{i}")).to_dict() for i in range(150)]
    assert all(
        set(s) == {"background", "colors", "shapes", "word", "texture", "direction", "noise_seed"} for s in specs
    )
    assert all(set(sh) == {"kind", "color", "size", "row", "col", "dx", "dy"} for s in specs for sh in s["shapes"])
    digest = hashlib.sha256(json.dumps(specs, sort_keys=True).encode()).hexdigest()
    assert digest == "c4147b23d5c1725759ba29c2ec979beb0a80ba50690ad064e9157e8903d2c598"


def test_same_seed_same_scene_and_pixels():
    for i in range(6):
        scene = _varied(i)
        assert scene == _varied(i)
        again = Scene.from_dict(json.loads(json.dumps(scene.to_dict())))
        assert again == scene
        assert np.array_equal(np.asarray(render_scene(scene)), np.asarray(render_scene(again)))
    assert _varied(0) != _varied(1)


@pytest.mark.slow
def test_every_variation_occurs(many):
    seen = Counter()
    for scene in many:
        look = scene.look
        seen[scene.background] += 1
        seen[f"texture {scene.texture}"] += bool(scene.texture)
        aspect = look.width / look.height
        assert V.ASPECTS[0] - 0.01 <= aspect <= V.ASPECTS[1] + 0.01
        assert V.LONG_SIDE[0] <= max(look.width, look.height) <= V.LONG_SIDE[1]
        seen["square canvas" if look.width == look.height else "landscape" if aspect > 1 else "portrait"] += 1
        seen["aliased"] += look.supersample == 1
        seen["noise"] += look.noise > 0
        seen["blur"] += look.blur > 0
        seen["jpeg"] += look.jpeg > 0
        seen["webcam"] += bool(look.warp) and look.vignette > 0 and look.cast != (1.0, 1.0, 1.0)
        seen["word"] += scene.word is not None
        for shape in scene.shapes:
            seen[f"style {shape.style}"] += 1
            seen["rotated"] += shape.rotation != 0
            seen["exact colour varied"] += shape.rgb is not None
            seen["big lone shape"] += shape.scale > 1.3
            seen[f"kind {shape.kind}"] += 1
            seen[f"colour {shape.color}"] += 1
    wanted = [*V.BACKGROUND_KINDS, *(f"texture {t}" for t in V.TEXTURES), *(f"style {s}" for s in V.STYLES),
              "square canvas", "landscape", "portrait", "aliased", "noise", "blur", "jpeg", "webcam", "word",
              "rotated", "exact colour varied", "big lone shape"]  # fmt: skip
    assert not [w for w in wanted if seen[w] == 0], seen
    assert seen["photo"] >= 0.1 * len(many) and seen["white"] >= 0.1 * len(many)
    photos = {s.look.photo for s in many if s.background == "photo"}
    assert photos and not photos & {"astronaut", "coffee", "motorcycle"}, "held-out photos stay out of training"


def test_a_varied_colour_stays_nearest_its_name():
    for i in range(400):
        name = ("red", "orange", "yellow", "green", "blue", "purple", "pink", "brown", "black", "white")[i % 10]
        rgb = V._vary_colour(random.Random(i), name)
        assert V.nearest_name(rgb) == name


@pytest.mark.slow
def test_listed_shapes_are_there_with_their_colour(many):
    for scene in many[:40]:
        assert all(V.visible_shapes(scene)), scene
        if scene.look.warp or scene.look.noise or scene.look.jpeg or scene.look.blur:
            continue
        pixels = np.asarray(render_scene(scene)).astype(int)  # (H, W, 3)
        for shape in scene.shapes:
            if shape.style not in ("filled", "outlined", "sketch-filled"):
                continue
            x, y = shape.center
            centre = pixels[min(round(y * scene.look.height), scene.look.height - 1),
                            min(round(x * scene.look.width), scene.look.width - 1)]  # fmt: skip
            assert np.abs(centre - (shape.rgb or COLOR_NAMES[shape.color])).max() <= 8, (shape, centre)


def _hand_made(shape: Shape, background=(255, 255, 255), **look) -> Scene:
    return Scene(background="plain", colors=(background,), shapes=(shape,),
                 look=V.Look(width=400, height=300, seed=1, **look))  # fmt: skip


def test_an_invisible_shape_is_found_and_never_listed():
    seen = Shape("star", "red", "large", 1, 1)
    assert V.visible_shapes(_hand_made(seen)) == [True]
    assert V.visible_shapes(_hand_made(seen, background=(215, 35, 35))) == [False], "red on red"
    assert V.visible_shapes(_hand_made(Shape("star", "red", "small", 1, 1, scale=0.2))) == [False], "too small"
    assert V.visible_shapes(_hand_made(Shape("circle", "red", "large", 1, 0, dx=-0.8))) == [False], "off the frame"
    assert V.visible_shapes(_hand_made(Shape("circle", "yellow", "large", 1, 1), cast=(0.6, 0.6, 1.4))) == [True]
    # Drawn from a background where only some colours show: every listed shape passes the check.
    for i in range(30):
        scene = _varied(1000 + i, backgrounds=("photo", "textured"))
        assert all(V.visible_shapes(scene))


@pytest.mark.slow
def test_positions_stay_true_through_the_webcam_warp(many):
    warped = [s for s in many if s.look.warp]
    assert warped
    for scene in warped:
        for shape in scene.shapes:
            x, y = shape.center
            u, v = V.captured_point(scene.look, x, y)
            assert (int(u * 3), int(v * 3)) == (int(x * 3), int(y * 3)), (scene, shape)


@pytest.mark.parametrize(("width", "height"), [(1280, 640), (160, 320), (300, 300), (517, 389)])
def test_any_aspect_ratio_passes_through_preprocessing_with_positions_kept(width, height):
    """engine.preprocess letterboxes: a shape in the top left third stays there."""
    scene = _hand_made(Shape("square", "black", "large", 0, 0))
    scene = Scene(background="plain", colors=((255, 255, 255),), shapes=scene.shapes,
                  look=V.Look(width=width, height=height))  # fmt: skip
    image = render_scene(scene)
    assert image.size == (width, height)
    tensor = image_to_tensor(image, 64)  # (3, 64, 64)
    assert tuple(tensor.shape) == (3, 64, 64)
    scale = 64 / max(width, height)
    w, h = round(width * scale), round(height * scale)
    top, left = (64 - h) // 2, (64 - w) // 2
    dark = (tensor.mean(dim=0) < 0).numpy()[top : top + h, left : left + w]  # the picture, without the bars
    ys, xs = np.nonzero(dark)
    assert xs.mean() < w / 3 and ys.mean() < h / 3


@pytest.mark.slow
def test_questions_about_varied_scenes_use_the_spec(many):
    for i, scene in enumerate(many[:60]):
        qa = make_question(scene, random.Random(i), "describe")
        for shape in scene.shapes:
            assert f"{shape.color} {shape.kind}" in qa.answer


def test_a_varied_dataset_builds_and_reads_back(tmp_path):
    build_dataset(BuildConfig(out=tmp_path / "d", scenes=10, photos=False, sounds=0, chitchat=False, variety=True,
                              workers=1))  # fmt: skip
    manifest = json.loads((tmp_path / "d" / "manifest.json").read_text())
    assert manifest["settings"]["variety"] is True
    examples = load_dataset(tmp_path / "d", "train")
    suffixes = set()
    for example in examples:
        picture = example.conversation.turns[0].images[0]
        suffixes.add(str(picture).rsplit(".", 1)[-1])
        scene = Scene.from_dict(example.meta["scene"])
        assert scene.look is not None and math.isfinite(scene.look.width)
    assert suffixes <= {"png", "jpg"}

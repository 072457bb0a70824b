"""The shapes tool on drawings made here with PIL (neither scene renderer's code), and on pictures
that are not drawings, where it must say nothing."""

from __future__ import annotations

import math

import numpy as np
import pytest
from PIL import Image, ImageDraw

from engine.observe import ImageObservations, observe_image
from engine.shapes import find_shapes


def canvas(size=(320, 240), colour="white"):
    image = Image.new("RGB", size, colour)
    return image, ImageDraw.Draw(image)


def regular(cx, cy, r, corners, turn=0.0, inner=None):
    points = []
    step = math.pi / corners if inner else 2 * math.pi / corners
    for i in range(corners * (2 if inner else 1)):
        radius = inner if inner and i % 2 else r
        a = -math.pi / 2 + turn + i * step
        points.append((cx + radius * math.cos(a), cy + radius * math.sin(a)))
    return points


def test_the_issue_picture_green_circle_and_blue_triangle():
    image, draw = canvas()
    draw.ellipse((40, 60, 140, 160), fill=(0, 160, 0))
    draw.polygon(regular(240, 130, 55, 3), fill=(0, 0, 230))
    assert find_shapes(image) == ("green circle", "blue triangle")


@pytest.mark.parametrize(
    ("draw_it", "expected"),
    [
        (lambda d: d.rectangle((100, 60, 220, 180), fill=(220, 20, 20)), "red square"),
        (lambda d: d.rectangle((60, 80, 260, 160), fill=(20, 20, 20)), "black rectangle"),
        (lambda d: d.polygon(regular(160, 120, 80, 4), fill=(250, 200, 0)), "yellow diamond"),
        (lambda d: d.polygon(regular(160, 120, 90, 5, inner=38), fill=(130, 40, 170)), "purple star"),
        (
            lambda d: d.polygon(
                [
                    (140, 40),
                    (180, 40),
                    (180, 100),
                    (240, 100),
                    (240, 140),
                    (180, 140),
                    (180, 200),
                    (140, 200),
                    (140, 140),
                    (80, 140),
                    (80, 100),
                    (140, 100),
                ],
                fill=(240, 140, 30),
            ),
            "orange cross",
        ),  # fmt: skip
        (lambda d: d.ellipse((70, 30, 250, 210), outline=(30, 60, 220), width=8), "blue circle outline"),
    ],
)
def test_each_kind_with_its_colour(draw_it, expected):
    image, draw = canvas()
    draw_it(draw)
    assert find_shapes(image) == (expected,)


def test_any_canvas_size_and_a_coloured_background():
    image, draw = canvas((1200, 500), colour=(255, 235, 80))
    draw.ellipse((100, 100, 400, 400), fill=(200, 30, 30))
    draw.rectangle((700, 120, 960, 380), fill=(30, 60, 220))
    assert find_shapes(image) == ("red circle", "blue square")


def test_a_jpeg_of_the_drawing_reads_the_same(tmp_path):
    image, draw = canvas()
    draw.ellipse((40, 60, 140, 160), fill=(0, 160, 0))
    draw.polygon(regular(240, 130, 55, 3), fill=(0, 0, 230))
    image.save(tmp_path / "drawing.jpg", quality=35)
    assert find_shapes(Image.open(tmp_path / "drawing.jpg")) == ("green circle", "blue triangle")


def test_an_empty_plain_picture_has_no_shapes():
    assert find_shapes(canvas()[0]) == ()


def test_a_picture_that_is_not_a_drawing_gets_no_claim():
    noise = np.random.default_rng(0).integers(0, 256, (240, 320, 3), dtype=np.uint8)
    assert find_shapes(Image.fromarray(noise)) is None
    gradient = np.linspace(0, 255, 320, dtype=np.uint8)[None, :, None].repeat(240, 0).repeat(3, 2)
    assert find_shapes(Image.fromarray(gradient)) is None


def test_the_tool_in_observations_and_in_plain_sentences():
    image, draw = canvas()
    draw.ellipse((40, 60, 140, 160), fill=(0, 160, 0))
    draw.polygon(regular(240, 130, 55, 3), fill=(0, 0, 230))
    seen = observe_image(image, ("colors", "shapes"))
    assert seen.as_text().endswith("shapes: green circle, blue triangle")
    assert seen.as_sentences().startswith(
        "It is a drawing of two shapes on a white background: a green circle and a blue triangle."
    )
    photo = ImageObservations(text=("EXIT", "+"), faces=2, colors=("gray", "black"), tools=("ocr", "faces", "colors"))
    assert photo.as_sentences() == (
        'Its main colours are gray and black. The text in it reads "EXIT". There are two faces in it.'
    )


def test_a_drawn_thing_of_no_known_kind_is_still_a_shape():
    image, draw = canvas()
    draw.polygon([(60, 40), (120, 40), (120, 150), (260, 150), (260, 200), (60, 200)], fill=(20, 20, 20))  # an L
    assert find_shapes(image) == ("black shape",)

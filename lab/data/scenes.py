"""Generated scenes: a seeded spec of shapes on a background, and its rendering with Pillow.

    spec = random_scene(random.Random("0/scene/train/17"))
    image = render_scene(spec, size=128)          # PIL RGB image, size x size

With `variety=True` (lab.data.variety) the same layout is drawn the way people's pictures
look: any canvas size and aspect ratio, white, black, coloured, gradient, textured and photo
backgrounds, rotated, outlined and hand-drawn shapes, and webcam-like captures; the spec keeps
what is really visible (lab.data.variety drops a shape that would not be).

The canvas is a 3x3 grid. Each shape sits in its own cell, so shapes never overlap and a
shape's position word ("top left", "center", ...) is the third its centre falls in. A word,
when there is one, fills a whole row of the grid and shapes use the other two rows, so text
never touches a shape. Sizes and letters are chosen to stay legible after the model shrinks
the picture to 64x64: shapes are 11 to 17 px across there, letters about 13 px tall.
"""

from __future__ import annotations

import functools
import math
import random
from dataclasses import asdict, dataclass, fields
from typing import TYPE_CHECKING

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from engine.observe import COLOR_NAMES

if TYPE_CHECKING:
    from lab.data.variety import Look

SHAPES = ("circle", "square", "triangle", "star", "diamond", "cross")
SHAPE_COLORS = ("red", "orange", "yellow", "green", "blue", "purple", "pink", "brown", "black", "white")
SIZES = {"small": 0.26, "medium": 0.33, "large": 0.40}  # radius as a fraction of a grid cell
ROWS = ("top", "middle", "bottom")
COLUMNS = ("left", "center", "right")
# Short words, none of them a colour or a shape name, that stay readable at 64x64.
WORDS = (
    "CAT",
    "DOG",
    "SUN",
    "HAT",
    "BOX",
    "CAR",
    "BUS",
    "CUP",
    "MAP",
    "PEN",
    "KEY",
    "BED",
    "EGG",
    "FOX",
    "OWL",
    "PIG",
    "COW",
    "BEE",
    "YES",
    "NO",
    "HI",
    "OK",
    "GO",
    "STOP",
    "TREE",
    "FISH",
    "BIRD",
    "BOOK",
    "CAKE",
    "MOON",
    "RAIN",
    "SNOW",
    "HOME",
    "SHOP",
    "OPEN",
    "EXIT",
    "PARK",
    "MILK",
    "BALL",
    "DUCK",
    "FROG",
    "LION",
    "BEAR",
    "WOLF",
    "BOAT",
    "DOOR",
    "LAMP",
    "SHOE",
    "SOCK",
    "KING",
    "HELLO",
    "WATER",
    "HAPPY",
    "MUSIC",
    "APPLE",
    "HOUSE",
    "TRAIN",
    "PIZZA",
    "ROBOT",
    "TIGER",
)
# Plain background tints: (name, RGB). Shape colours too close to the background are not used.
BACKGROUNDS = (
    ("light gray", (205, 205, 205)),
    ("beige", (228, 216, 190)),
    ("sky", (180, 206, 232)),
    ("mint", (192, 226, 202)),
    ("lavender", (214, 200, 232)),
    ("cream", (245, 240, 220)),
    ("slate", (70, 80, 92)),
    ("charcoal", (45, 45, 48)),
    ("navy", (28, 36, 78)),
    ("olive", (92, 96, 56)),
)
BACKGROUND_KINDS = ("plain", "gradient", "textured")
TEXTURES = ("stripes", "checks", "noise", "dots")
MIN_CONTRAST = 120.0  # least RGB distance between a shape's colour and any background colour
TEXTURE_AMPLITUDE = 16  # +- brightness of a texture


@dataclass(frozen=True)
class Shape:
    kind: str  # one of SHAPES
    color: str  # one of SHAPE_COLORS
    size: str  # one of SIZES
    row: int  # 0..2, top to bottom
    col: int  # 0..2, left to right
    dx: float = 0.0  # offset of the centre from the cell's centre, in cells
    dy: float = 0.0
    # lab.data.variety only; the defaults are the plain generator's shapes
    rotation: float = 0.0  # degrees, counter-clockwise
    style: str = "filled"  # "filled" | "outlined" | "outline" | "sketch" | "sketch-filled"
    scale: float = 1.0  # radius = SIZES[size] * scale cells
    rgb: tuple[int, int, int] | None = None  # the exact colour drawn (None: COLOR_NAMES[color])

    @property
    def center(self) -> tuple[float, float]:
        """Centre as fractions (x, y) of the canvas, in [0, 1]."""
        return (self.col + 0.5 + self.dx) / 3, (self.row + 0.5 + self.dy) / 3

    @property
    def position(self) -> str:
        """'top left', 'top', 'left', 'center', ... from the third the centre falls in."""
        x, y = self.center
        row, col = ROWS[min(int(y * 3), 2)], COLUMNS[min(int(x * 3), 2)]
        if row == "middle":
            return col
        return row if col == "center" else f"{row} {col}"


@dataclass(frozen=True)
class Word:
    text: str  # upper case, from WORDS
    row: int  # the grid row the word fills
    dx: float = 0.0  # horizontal offset of its centre, in canvas widths
    color: str = "black"  # "black" on light backgrounds, "white" on dark ones


@dataclass(frozen=True)
class Scene:
    """Everything that decides the picture; equal scenes render to equal pixels (and are hashable)."""

    background: str  # one of BACKGROUND_KINDS
    colors: tuple[tuple[int, int, int], ...]  # one RGB (plain, textured) or two (gradient)
    shapes: tuple[Shape, ...]  # in reading order: left to right, then top to bottom
    word: Word | None = None
    texture: str = ""  # one of TEXTURES when background == "textured"
    direction: str = ""  # "horizontal" | "vertical" | "diagonal" when background == "gradient"
    noise_seed: int = 0  # pixels of a "noise" texture
    look: Look | None = None  # canvas, photo background and capture of a varied scene (lab.data.variety)

    def to_dict(self) -> dict:
        """A JSON-able dict; fields the plain generator never sets are left out at their defaults,
        so its scenes' dicts are what they always were."""
        data = asdict(self)
        defaults = {f.name: f.default for f in fields(Shape)}
        data["shapes"] = [{k: v for k, v in s.items() if k in _SHAPE_CORE or v != defaults[k]} for s in data["shapes"]]
        if self.look is None:
            del data["look"]
        return data

    @classmethod
    def from_dict(cls, data: dict) -> Scene:
        return cls(
            background=data["background"],
            colors=tuple(tuple(c) for c in data["colors"]),
            shapes=tuple(Shape(**{**s, "rgb": tuple(s["rgb"]) if s.get("rgb") else None}) for s in data["shapes"]),
            word=Word(**data["word"]) if data.get("word") else None,
            texture=data.get("texture", ""),
            direction=data.get("direction", ""),
            noise_seed=data.get("noise_seed", 0),
            look=_look(data.get("look")),
        )


_SHAPE_CORE = ("kind", "color", "size", "row", "col", "dx", "dy")


def _look(data: dict | None):
    if not data:
        return None
    from lab.data.variety import Look

    return Look.from_dict(data)


def _jitter(rng: random.Random, rgb: tuple[int, int, int], amount: int = 10) -> tuple[int, int, int]:
    return tuple(max(0, min(255, c + rng.randint(-amount, amount))) for c in rgb)


def _is_light(rgb) -> bool:
    return 0.299 * rgb[0] + 0.587 * rgb[1] + 0.114 * rgb[2] > 128


def random_scene(
    rng: random.Random,
    min_shapes: int = 1,
    max_shapes: int = 5,
    word_probability: float = 0.3,
    backgrounds: tuple[str, ...] | None = None,
    variety: bool = False,
) -> Scene:
    """A random scene spec; everything drawn from `rng`, so a seeded rng gives the same scene.

    `backgrounds`: the kinds to draw from (default BACKGROUND_KINDS, or with `variety`
    lab.data.variety.BACKGROUND_KINDS, which adds "white", "black" and "photo"). With `variety`
    the scene is one of lab.data.variety's varied scenes (it renders to its own canvas size)."""
    if variety:
        from lab.data.variety import varied_scene

        return varied_scene(rng, min_shapes, max_shapes, word_probability, backgrounds)
    backgrounds = backgrounds or BACKGROUND_KINDS
    kind = rng.choice(backgrounds)
    light = rng.random() < 0.6
    tints = [rgb for _, rgb in BACKGROUNDS if _is_light(rgb) == light]
    if kind == "gradient":
        first, second = rng.sample(tints, 2)
        colors = (_jitter(rng, first), _jitter(rng, second))
    else:
        colors = (_jitter(rng, rng.choice(tints)),)
    spread = TEXTURE_AMPLITUDE if kind == "textured" else 0
    usable = [
        name for name in SHAPE_COLORS if all(math.dist(COLOR_NAMES[name], bg) >= MIN_CONTRAST + spread for bg in colors)
    ]

    word = None
    cells = [(r, c) for r in range(3) for c in range(3)]
    if rng.random() < word_probability:
        row = rng.randrange(3)
        word = Word(
            text=rng.choice(WORDS),
            row=row,
            dx=round(rng.uniform(-0.08, 0.08), 3),
            color="black" if _is_light(colors[0]) else "white",
        )
        cells = [(r, c) for r, c in cells if r != row]
    n = rng.randint(min_shapes, min(max_shapes, len(cells)))
    shapes = []
    for row, col in sorted(rng.sample(cells, n), key=lambda rc: (rc[1], rc[0])):
        size = rng.choice(tuple(SIZES))
        room = max(0.0, 0.5 - SIZES[size] - 0.06)  # keep the shape inside its cell
        shapes.append(
            Shape(
                kind=rng.choice(SHAPES),
                color=rng.choice(usable),
                size=size,
                row=row,
                col=col,
                dx=round(rng.uniform(-room, room), 3),
                dy=round(rng.uniform(-room, room), 3),
            )
        )
    return Scene(
        background=kind,
        colors=colors,
        shapes=tuple(shapes),
        word=word,
        texture=rng.choice(TEXTURES) if kind == "textured" else "",
        direction=rng.choice(("horizontal", "vertical", "diagonal")) if kind == "gradient" else "",
        noise_seed=rng.randrange(2**31) if kind == "textured" else 0,
    )


# ----------------------------------------------------------------------------- rendering


def _background(scene: Scene, side: int) -> np.ndarray:
    """(side, side, 3) uint8 pixels of the background."""
    base = np.array(scene.colors[0], dtype=np.float32)
    ys, xs = np.mgrid[0:side, 0:side].astype(np.float32) / max(side - 1, 1)  # (side, side) each in [0, 1]
    if scene.background == "gradient":
        t = {"horizontal": xs, "vertical": ys, "diagonal": (xs + ys) / 2}[scene.direction][..., None]
        pixels = base * (1 - t) + np.array(scene.colors[1], dtype=np.float32) * t  # (side, side, 3)
    else:
        pixels = np.broadcast_to(base, (side, side, 3)).copy()
    if scene.background == "textured":
        cells = 16  # pattern period: 16 per canvas side
        u, v = xs * cells, ys * cells
        if scene.texture == "stripes":
            pattern = np.sign(np.sin(2 * math.pi * (u + v) / 2))
        elif scene.texture == "checks":
            pattern = np.where((np.floor(u) + np.floor(v)) % 2 == 0, 1.0, -1.0)
        elif scene.texture == "dots":
            pattern = np.where((u % 1 - 0.5) ** 2 + (v % 1 - 0.5) ** 2 < 0.06, 1.0, -0.25)
        else:  # smooth noise: a coarse random grid, upsampled
            coarse = np.random.default_rng(scene.noise_seed).uniform(-1, 1, (cells, cells)).astype(np.float32)
            pattern = np.asarray(Image.fromarray(coarse, mode="F").resize((side, side), Image.Resampling.BICUBIC))
            pattern = np.clip(pattern, -1, 1)
        pixels += TEXTURE_AMPLITUDE * pattern[..., None]
    return np.clip(pixels.round(), 0, 255).astype(np.uint8)


def shape_polygon(kind: str, cx: float, cy: float, r: float) -> list[tuple[float, float]]:
    """Outline of a shape of 'radius' r centred on (cx, cy) (the circle is drawn as an ellipse)."""

    def ring(count, radius, start):
        return [
            (
                cx + radius * math.cos(start + 2 * math.pi * i / count),
                cy + radius * math.sin(start + 2 * math.pi * i / count),
            )
            for i in range(count)
        ]

    if kind == "square":
        h = r * 0.86
        return [(cx - h, cy - h), (cx + h, cy - h), (cx + h, cy + h), (cx - h, cy + h)]
    if kind == "diamond":
        return ring(4, r * 1.1, -math.pi / 2)
    if kind == "triangle":  # pointing up, centroid on the centre
        return ring(3, r * 1.15, -math.pi / 2)
    if kind == "star":
        outer, inner = ring(5, r * 1.15, -math.pi / 2), ring(5, r * 1.15 * 0.45, -math.pi / 2 + math.pi / 5)
        return [p for pair in zip(outer, inner) for p in pair]
    if kind == "cross":
        a, b = r * 0.95, r * 0.34  # arm length, half arm width
        return [
            (cx - b, cy - a),
            (cx + b, cy - a),
            (cx + b, cy - b),
            (cx + a, cy - b),
            (cx + a, cy + b),
            (cx + b, cy + b),
            (cx + b, cy + a),
            (cx - b, cy + a),
            (cx - b, cy + b),
            (cx - a, cy + b),
            (cx - a, cy - b),
            (cx - b, cy - b),
        ]
    raise ValueError(f"Unknown shape {kind!r}")


@functools.lru_cache(maxsize=8)
def _font(pixels: int) -> ImageFont.FreeTypeFont:
    return ImageFont.load_default(size=pixels)  # Pillow's own Aileron: the same on every machine


def render_scene(scene: Scene, size: int = 128, supersample: int = 2) -> Image.Image:
    """Draw a scene as a size x size RGB image (drawn larger, then downsampled for smooth edges).
    A varied scene (`scene.look`) is drawn at its own canvas size; `size` and `supersample` are
    then ignored."""
    if scene.look is not None:
        from lab.data.variety import render_varied

        return render_varied(scene)
    side = size * supersample
    image = Image.fromarray(_background(scene, side), mode="RGB")
    draw = ImageDraw.Draw(image)
    cell = side / 3
    for shape in scene.shapes:
        x, y = shape.center
        cx, cy, r = x * side, y * side, SIZES[shape.size] * cell
        fill = COLOR_NAMES[shape.color]
        if shape.kind == "circle":
            draw.ellipse((cx - r, cy - r, cx + r, cy + r), fill=fill)
        else:
            draw.polygon(shape_polygon(shape.kind, cx, cy, r), fill=fill)
    if scene.word:
        font = _font(round(cell * 0.62))
        fill = COLOR_NAMES[scene.word.color]
        cx, cy = (0.5 + scene.word.dx) * side, (scene.word.row + 0.5) * cell
        draw.text(
            (cx, cy),
            scene.word.text,
            font=font,
            fill=fill,
            anchor="mm",
            stroke_width=max(1, round(cell * 0.035)),
            stroke_fill=fill,
        )
    return image.resize((size, size), Image.Resampling.LANCZOS) if supersample > 1 else image

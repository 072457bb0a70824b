"""A second scene renderer, written apart from the training generator, to test generalisation (issue 19).

    scene, image = second_scene(random.Random("plain/3"), "plain")   # Scene (the description), PIL RGB

It shares only the vocabulary with lab.data.scenes (shape kinds and colour names, which the
model's answers use) and its `Scene`/`Shape` records, so `make_question` can ask about it.
Everything else is its own: OpenCV draws, with its own colour values (PALETTE: other exact RGB
for each name, each still nearest its name), its own shape geometry (a taller diamond, a
thinner cross, a fatter star, the triangle centred on its box), 4:3 canvases (CANVASES), and
a free layout: shapes anywhere in their third of the picture, reaching into the next third,
not in a 3x3 grid of cells.

Settings:
- "plain": the bar's setting: a white canvas, 4:3, 1 to 3 filled, upright, anti-aliased shapes.
- "hard": any background (colours, gradients, blotches, stripes, and crops of the photos the
  training data holds out), 1 to 5 shapes, rotated or outlined, blur, noise and JPEG.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass

import cv2
import numpy as np
from PIL import Image

from engine.observe import COLOR_NAMES
from lab.data.photos import HELDOUT_PHOTOS, PHOTOS
from lab.data.scenes import SHAPE_COLORS, SHAPES, Scene, Shape

SETTINGS = ("plain", "hard")
# Its own value for each colour name (not engine.observe.COLOR_NAMES', which the training draws near).
PALETTE = {
    "red": (204, 18, 44),
    "orange": (252, 150, 38),
    "yellow": (250, 232, 52),
    "green": (28, 150, 72),
    "blue": (22, 62, 204),
    "purple": (126, 38, 158),
    "pink": (250, 164, 204),
    "brown": (118, 70, 30),
    "black": (0, 0, 0),
    "white": (255, 255, 255),
}
CANVASES = {"plain": ((320, 240), (640, 480), (800, 600), (1024, 768)),
            "hard": ((320, 240), (640, 480), (800, 600), (1024, 768), (480, 640), (600, 800))}  # fmt: skip
CONTRAST = 100.0  # least RGB distance from a shape's colour to ~all the background under it
TILT = {"circle": 0, "square": 12, "diamond": 18, "cross": 22, "triangle": 180, "star": 180}  # degrees, +-


@dataclass(frozen=True)
class _Item:
    kind: str
    color: str
    cx: float  # px
    cy: float
    r: float  # px
    angle: float = 0.0  # degrees
    thickness: int = -1  # -1: filled, else the outline's width in px


def _geometry(kind: str, r: float) -> np.ndarray:
    """(K, 2) outline of a shape around (0, 0), radius r (float px)."""

    def star(points: int, outer: float, inner: float) -> np.ndarray:
        t = np.arange(2 * points) * math.pi / points - math.pi / 2
        radius = np.where(np.arange(2 * points) % 2 == 0, outer, inner)
        return np.stack([radius * np.cos(t), radius * np.sin(t)], axis=1)

    if kind == "circle":
        t = np.linspace(0, 2 * math.pi, 120, endpoint=False)
        return np.stack([r * np.cos(t), r * np.sin(t)], axis=1)
    if kind == "square":
        h = 0.8 * r
        return np.array([[-h, -h], [h, -h], [h, h], [-h, h]])
    if kind == "diamond":  # taller than wide
        return np.array([[0, -1.12 * r], [0.78 * r, 0], [0, 1.12 * r], [-0.78 * r, 0]])
    if kind == "triangle":  # equilateral, pointing up, its box centred on the point
        side = 1.9 * r
        height = side * math.sqrt(3) / 2
        return np.array([[0, -height / 2], [side / 2, height / 2], [-side / 2, height / 2]])
    if kind == "star":
        return star(5, 1.18 * r, 0.52 * r)
    if kind == "cross":
        a, b = 1.0 * r, 0.3 * r
        return np.array([[-b, -a], [b, -a], [b, -b], [a, -b], [a, b], [b, b], [b, a], [-b, a], [-b, b], [-a, b],
                         [-a, -b], [-b, -b]])  # fmt: skip
    raise ValueError(kind)


def _points(item: _Item) -> np.ndarray:
    """(K, 2) int32 outline in px, rotated and placed, in cv2's 4-bit sub-pixel units."""
    outline = _geometry(item.kind, item.r)
    a = math.radians(item.angle)
    turn = np.array([[math.cos(a), math.sin(a)], [-math.sin(a), math.cos(a)]])
    placed = outline @ turn + np.array([item.cx, item.cy])
    return np.round(placed * 16).astype(np.int32)


def _draw(canvas: np.ndarray, mask: np.ndarray, item: _Item, label: int, line: int) -> None:
    colour = tuple(int(c) for c in PALETTE[item.color])
    points = _points(item)
    if item.thickness < 0:
        cv2.fillPoly(canvas, [points], colour, line, shift=4)
        cv2.fillPoly(mask, [points], label, cv2.LINE_8, shift=4)
    else:
        cv2.polylines(canvas, [points], True, colour, item.thickness, line, shift=4)
        cv2.polylines(mask, [points], True, label, item.thickness, cv2.LINE_8, shift=4)


# ----------------------------------------------------------------------------- backgrounds


def _photo(rng: random.Random, width: int, height: int) -> np.ndarray | None:
    held = [p for p in PHOTOS if p.name in HELDOUT_PHOTOS and p.path is not None and p.path.is_file()]
    if not held:
        return None
    bgr = cv2.imread(str(rng.choice(held).path), cv2.IMREAD_COLOR)
    h, w = bgr.shape[:2]
    keep = rng.uniform(0.35, 0.75)
    cw = min(w, round(keep * w))
    ch = min(h, round(cw * height / width))
    x, y = rng.randint(0, w - cw), rng.randint(0, h - ch)
    crop = cv2.resize(bgr[y : y + ch, x : x + cw], (width, height), interpolation=cv2.INTER_AREA)
    sigma = rng.uniform(0.008, 0.02) * max(width, height)
    crop = cv2.GaussianBlur(crop, (0, 0), sigma).astype(np.float32)
    fade = rng.uniform(0.4, 0.7)
    crop = crop * (1 - fade) + crop.mean(axis=(0, 1)) * fade
    return cv2.cvtColor(np.clip(crop, 0, 255).astype(np.uint8), cv2.COLOR_BGR2RGB)


def _hard_background(rng: random.Random, width: int, height: int) -> tuple[np.ndarray, str]:
    def colour() -> np.ndarray:
        return np.array([rng.randint(0, 255) for _ in range(3)], dtype=np.float32)

    kind = rng.choice(("colour", "colour", "gradient", "blotches", "stripes", "photo", "photo"))
    if kind == "photo":
        photo = _photo(rng, width, height)
        if photo is not None:
            return photo, "photo"
        kind = "gradient"
    if kind == "colour":
        return np.full((height, width, 3), colour(), np.float32).astype(np.uint8), "plain"
    if kind == "gradient":
        a, b = colour(), colour()
        t = np.linspace(0, 1, width if rng.random() < 0.5 else height, dtype=np.float32)
        ramp = a + (b - a) * t[:, None]  # (L, 3)
        image = np.broadcast_to(ramp[None], (height, width, 3)) if len(t) == width else np.broadcast_to(
            ramp[:, None], (height, width, 3))  # fmt: skip
        return np.ascontiguousarray(image).astype(np.uint8), "gradient"
    if kind == "blotches":
        seed = np.random.default_rng(rng.randrange(2**31))
        field = seed.normal(0, 1, (height // 8 + 1, width // 8 + 1)).astype(np.float32)
        field = cv2.resize(cv2.GaussianBlur(field, (0, 0), 2.0), (width, height), interpolation=cv2.INTER_CUBIC)
        field = (field - field.min()) / (np.ptp(field) + 1e-6)
        a, b = colour(), colour()
        return (a + (b - a) * field[..., None]).astype(np.uint8), "textured"
    image = np.full((height, width, 3), colour(), np.uint8)
    other = tuple(int(c) for c in np.clip(image[0, 0].astype(int) + rng.choice((-40, 40)), 0, 255))
    step = rng.randint(max(8, width // 40), max(9, width // 12))
    for x in range(-height, width, step):  # diagonal stripes
        cv2.line(image, (x, 0), (x + height, height), other, max(2, step // 3), cv2.LINE_AA)
    return image, "textured"


# ----------------------------------------------------------------------------- scenes


def _usable(background: np.ndarray, item: _Item) -> bool:
    h, w = background.shape[:2]
    reach = 1.25 * item.r
    x0, x1 = max(0, int(item.cx - reach)), min(w, int(item.cx + reach) + 1)
    y0, y1 = max(0, int(item.cy - reach)), min(h, int(item.cy + reach) + 1)
    under = background[y0:y1, x0:x1].reshape(-1, 3).astype(np.float32)
    distance = np.linalg.norm(under - np.array(PALETTE[item.color], dtype=np.float32), axis=1)
    return float((distance >= CONTRAST).mean()) >= 0.92


def _place(rng: random.Random, width: int, height: int, n: int, hard: bool) -> list[tuple[int, float, float, float]]:
    """n (third, cx, cy, r): each centre well inside its own third of the picture; no overlaps."""
    while True:
        placed = []
        for third in rng.sample(range(9), n):
            row, col = divmod(third, 3)
            for _ in range(30):
                low, high = (0.075, 0.125) if n > 3 else (0.085, 0.15)
                r = rng.uniform(low, high) * min(width, height)
                cx = (col + rng.uniform(0.15, 0.85)) * width / 3
                cy = (row + rng.uniform(0.15, 0.85)) * height / 3
                reach = 1.25 * r
                inside = reach + 4 <= cx <= width - reach - 4 and reach + 4 <= cy <= height - reach - 4
                if inside and all(math.hypot(cx - x, cy - y) > 1.25 * (r + q) + 6 for _, x, y, q in placed):
                    placed.append((third, cx, cy, r))
                    break
        if len(placed) == n:
            return placed


def _describe(items: list[_Item], width: int, height: int, background: str, colours) -> Scene:
    shapes = []
    for item in items:
        x, y = item.cx / width, item.cy / height
        col, row = min(int(x * 3), 2), min(int(y * 3), 2)
        share = item.r / (min(width, height) / 3)
        size = "small" if share < 0.3 else "medium" if share < 0.37 else "large"
        shapes.append(Shape(kind=item.kind, color=item.color, size=size, row=row, col=col,
                            dx=round(x * 3 - col - 0.5, 4), dy=round(y * 3 - row - 0.5, 4)))  # fmt: skip
    shapes.sort(key=lambda s: (s.col, s.row))
    return Scene(background=background, colors=colours, shapes=tuple(shapes))


def _still_named(image: np.ndarray, mask: np.ndarray, items: list[_Item]) -> bool:
    """After blur, noise and JPEG, is each shape's ink still nearest its colour name?"""
    names = list(COLOR_NAMES)
    palette = np.array([COLOR_NAMES[n] for n in names], dtype=np.float32)
    for label, item in enumerate(items, 1):
        core = cv2.erode((mask == label).astype(np.uint8), np.ones((3, 3), np.uint8))
        pixels = image[core > 0] if core.sum() >= 12 else image[mask == label]
        if not len(pixels):
            return False
        median = np.median(pixels.astype(np.float32), axis=0)
        if names[int(np.linalg.norm(palette - median, axis=1).argmin())] != item.color:
            return False
    return True


def second_scene(rng: random.Random, setting: str = "plain") -> tuple[Scene, Image.Image]:
    """A scene drawn by this renderer: (its description, the RGB picture)."""
    if setting not in SETTINGS:
        raise ValueError(f"setting must be one of {SETTINGS}, not {setting!r}")
    hard = setting == "hard"
    while True:
        width, height = rng.choice(CANVASES[setting])
        if hard:
            background, kind = _hard_background(rng, width, height)
            colours = (tuple(int(c) for c in background.reshape(-1, 3).mean(axis=0)),)
        else:
            background, kind, colours = np.full((height, width, 3), 255, np.uint8), "plain", ((255, 255, 255),)
        n = rng.randint(1, 5 if hard else 3)
        items = []
        for _third, cx, cy, r in _place(rng, width, height, n, hard):
            kind_ = rng.choice(SHAPES)
            angle = rng.uniform(-TILT[kind_], TILT[kind_]) if hard and rng.random() < 0.5 else 0.0
            thickness = max(2, round(r * rng.uniform(0.15, 0.3))) if hard and rng.random() < 0.3 else -1
            options = [c for c in SHAPE_COLORS if _usable(background, _Item(kind_, c, cx, cy, r))]
            if options:
                items.append(_Item(kind_, rng.choice(options), cx, cy, r, angle, thickness))
        if not items:
            continue
        canvas = background.copy()
        mask = np.zeros((height, width), np.uint8)
        line = cv2.LINE_8 if hard and rng.random() < 0.25 else cv2.LINE_AA
        for label, item in enumerate(items, 1):
            _draw(canvas, mask, item, label, line)
        if hard:
            canvas = _degrade(rng, canvas)
            if not _still_named(canvas, mask, items):
                continue
        return _describe(items, width, height, kind, colours), Image.fromarray(canvas, mode="RGB")


def _degrade(rng: random.Random, image: np.ndarray) -> np.ndarray:
    """Blur, sensor noise and JPEG, each now and then."""
    if rng.random() < 0.35:
        image = cv2.GaussianBlur(image, (0, 0), rng.uniform(0.6, 1.6))
    if rng.random() < 0.35:
        noise = np.random.default_rng(rng.randrange(2**31)).normal(0, rng.uniform(3, 10), image.shape)
        image = np.clip(image.astype(np.float32) + noise, 0, 255).astype(np.uint8)
    if rng.random() < 0.4:
        ok, data = cv2.imencode(".jpg", cv2.cvtColor(image, cv2.COLOR_RGB2BGR),
                                [cv2.IMWRITE_JPEG_QUALITY, rng.randint(35, 85)])  # fmt: skip
        image = cv2.cvtColor(cv2.imdecode(data, cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)
    return image

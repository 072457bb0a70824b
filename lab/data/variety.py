"""Varied scenes: the scene generator's layout drawn the way people's pictures look (issue 19).

    scene = random_scene(random.Random("0/scene/train/17"), variety=True)
    image = render_scene(scene)                   # PIL RGB, scene.look.width x scene.look.height
    data, suffix = encode_scene(scene)            # the file bytes (PNG, or JPEG when the look says so)

What varies, each drawn from the scene's rng with the probability in PROBABILITIES:

- the canvas: any size (LONG_SIDE px on the long side) and aspect ratio (ASPECTS);
- the background: white, black, any plain colour, gradients, textures (stripes, checks, noise,
  dots, lined and graph paper) and crops of scikit-image's photos, blurred and faded so the
  shapes stay the answer (the photos lab.data.photos holds out are never used);
- each shape: its exact colour (within its name), size within its size word, a lone shape
  drawn big, rotation (never so much that a square becomes a diamond), filled, filled with an
  outline, outline only, or hand-drawn (jittered polylines, filled or not);
- the drawing: anti-aliased or aliased edges;
- the capture: sensor noise, blur, JPEG artefacts, and webcam-like captures (a perspective
  warp, blur, noise, a colour cast, vignetting and JPEG together).

The spec stays exact: a shape that would be unrecognisable in the final pixels (smaller than
MIN_DIAMETER of the long side, cut by the frame, too little contrast with what surrounds it,
or no longer nearest its colour name under the capture's lighting) is taken out of the scene,
not drawn and not listed; a perspective warp is weakened until every shape stays in its
third of the picture, so position words stay true. The model letterboxes (engine.preprocess),
so positions are the same in what it sees.
"""

from __future__ import annotations

import colorsys
import functools
import io
import math
import random
from dataclasses import asdict, dataclass, replace

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

from engine.observe import COLOR_NAMES
from lab.data import scenes
from lab.data.photos import HELDOUT_PHOTOS, PHOTOS
from lab.data.scenes import SHAPES, SIZES, WORDS, Scene, Shape, Word

BACKGROUND_KINDS = ("white", "black", "plain", "gradient", "textured", "photo")
BACKGROUND_WEIGHTS = {"white": 0.2, "black": 0.08, "plain": 0.22, "gradient": 0.15, "textured": 0.15, "photo": 0.2}
TEXTURES = ("stripes", "checks", "noise", "dots", "lined", "graph")
STYLES = {"filled": 0.45, "outlined": 0.15, "outline": 0.15, "sketch": 0.15, "sketch-filled": 0.10}
# Photos to crop backgrounds from: scikit-image's, none of those lab.data.photos holds out, none
# with writing or a face in it.
PHOTO_BACKGROUNDS = tuple(
    p.name
    for p in PHOTOS
    if p.package == "skimage" and p.name not in HELDOUT_PHOTOS and p.name not in ("page", "text", "logo", "phantom")
)
PROBABILITIES = {
    "square canvas": 0.25,
    "common aspect": 0.35,  # 4:3, 3:4, 16:9, 9:16, 3:2, 2:3 (else any aspect in ASPECTS)
    "exact colour varied": 0.7,
    "rotated": 0.5,
    "big lone shape": 0.3,  # of scenes with one shape
    "aliased": 0.2,
    "noise": 0.2,
    "blur": 0.15,
    "jpeg": 0.3,
    "webcam": 0.2,
}
LONG_SIDE = (160, 1280)  # px, log-uniform
ASPECTS = (0.5, 2.0)  # width / height, log-uniform
COMMON_ASPECTS = (4 / 3, 3 / 4, 16 / 9, 9 / 16, 3 / 2, 2 / 3)
MIN_CONTRAST = scenes.MIN_CONTRAST  # least RGB distance between a shape's colour and ~all the background under it
MIN_DIAMETER = 0.07  # least size of a shape, as a fraction of the canvas' long side (4.5 px at 64 px)
MIN_VISIBLE_SHARE = 0.6  # least share of a shape's drawn pixels left inside the frame
MIN_SURROUND_CONTRAST = 60.0  # least RGB distance between a shape's ink and most of what surrounds it
MAX_SUPERSAMPLED = 1600  # px: shapes are drawn at up to 3x, never over this, then downsampled
EXTENT = 1.22  # farthest point of any shape from its centre, in radii (a square's corner)
ROTATION = {"circle": 0, "square": 12, "diamond": 12, "cross": 25, "triangle": 180, "star": 180}  # degrees, +-


@dataclass(frozen=True)
class Look:
    """How a varied scene is drawn and captured; everything its pixels need besides the layout."""

    width: int
    height: int
    supersample: int = 2  # 1: aliased edges
    photo: str = ""  # background photo (Scene.background == "photo"), a lab.data.photos name
    photo_box: tuple[float, float, float, float] = (0.0, 0.0, 1.0, 1.0)  # crop, fractions of the photo
    photo_blur: float = 0.0  # Gaussian radius, fraction of the long side
    photo_fade: float = 0.0  # 0..1: blend towards the photo's mean colour (less busy)
    texture_amplitude: float = 0.0  # +- brightness of a texture
    texture_period: float = 0.05  # fraction of the long side
    warp: tuple[float, ...] = ()  # webcam: 8 inward corner offsets (TL x, y, TR, BR, BL), fractions
    blur: float = 0.0  # Gaussian radius of the capture, fraction of the long side
    noise: float = 0.0  # sensor noise sigma, 0-255 levels
    cast: tuple[float, float, float] = (1.0, 1.0, 1.0)  # per-channel gain: a colour cast
    vignette: float = 0.0  # 0..1: how much darker the corners are
    jpeg: int = 0  # JPEG quality of the saved picture; 0: PNG
    seed: int = 0  # sensor noise, hand-drawn jitter and stroke widths

    @classmethod
    def from_dict(cls, data: dict) -> Look:
        tuples = ("photo_box", "warp", "cast")
        return cls(**{k: tuple(v) if k in tuples else v for k, v in data.items()})

    def to_dict(self) -> dict:
        return asdict(self)


# ----------------------------------------------------------------------------- colours


def nearest_name(rgb, palette: dict[str, tuple[float, float, float]] = COLOR_NAMES) -> str:
    return min(palette, key=lambda name: math.dist(palette[name], rgb))


def _vary_colour(rng: random.Random, name: str) -> tuple[int, int, int]:
    """Another exact RGB that is still clearly `name`: nearest to it, and twice as near as to any other."""
    base = COLOR_NAMES[name]
    for _ in range(12):
        rgb = tuple(max(0, min(255, c + rng.randint(-32, 32))) for c in base)
        others = min(math.dist(rgb, v) for n, v in COLOR_NAMES.items() if n != name)
        if math.dist(rgb, base) * 2 < others:
            return rgb
    return base


def _random_tint(rng: random.Random) -> tuple[int, int, int]:
    if rng.random() < 0.4:
        return scenes._jitter(rng, rng.choice(scenes.BACKGROUNDS)[1])
    h, s, v = rng.random(), rng.uniform(0.05, 0.8), rng.uniform(0.12, 0.97)
    return tuple(round(255 * c) for c in colorsys.hsv_to_rgb(h, s, v))


# ----------------------------------------------------------------------------- backgrounds


@functools.lru_cache(maxsize=32)
def _photo_pixels(name: str) -> Image.Image:
    photo = next(p for p in PHOTOS if p.name == name)
    with Image.open(photo.path) as image:
        return image.convert("RGB")


def photo_available(name: str) -> bool:
    photo = next((p for p in PHOTOS if p.name == name), None)
    return photo is not None and photo.path is not None and photo.path.is_file()


def background_pixels(scene: Scene, width: int, height: int) -> np.ndarray:
    """(height, width, 3) float32 pixels of a varied scene's background, in 0..255."""
    look = scene.look
    if scene.background == "photo":
        photo = _photo_pixels(look.photo)
        w, h = photo.size
        x0, y0, x1, y1 = look.photo_box
        crop = photo.crop((round(x0 * w), round(y0 * h), round(x1 * w), round(y1 * h)))
        crop = crop.resize((width, height), Image.Resampling.BILINEAR)
        crop = crop.filter(ImageFilter.GaussianBlur(look.photo_blur * max(width, height)))
        pixels = np.asarray(crop, dtype=np.float32)
        mean = pixels.mean(axis=(0, 1), keepdims=True)
        return pixels * (1 - look.photo_fade) + mean * look.photo_fade
    ys, xs = np.mgrid[0:height, 0:width].astype(np.float32)  # (H, W) each, in px
    long = max(width, height)
    base = np.array(scene.colors[0], dtype=np.float32)
    if scene.background == "gradient":
        t = {
            "horizontal": xs / max(width - 1, 1),
            "vertical": ys / max(height - 1, 1),
            "diagonal": (xs / max(width - 1, 1) + ys / max(height - 1, 1)) / 2,
            "radial": np.clip(np.hypot(xs - width / 2, ys - height / 2) / (0.6 * long), 0, 1),
        }[scene.direction][..., None]
        pixels = base * (1 - t) + np.array(scene.colors[1], dtype=np.float32) * t  # (H, W, 3)
    else:
        pixels = np.broadcast_to(base, (height, width, 3)).copy()
    if scene.background != "textured":
        return pixels
    period = look.texture_period * long
    u, v = xs / period, ys / period
    texture = scene.texture
    if texture == "stripes":
        pattern = np.sign(np.sin(math.pi * (u + v)))
    elif texture == "checks":
        pattern = np.where((np.floor(u) + np.floor(v)) % 2 == 0, 1.0, -1.0)
    elif texture == "dots":
        pattern = np.where((u % 1 - 0.5) ** 2 + (v % 1 - 0.5) ** 2 < 0.06, 1.0, -0.25)
    elif texture in ("lined", "graph"):  # ruled or squared paper: thin darker lines
        line = max(1.0, long / 400)
        pattern = -((ys % period) < line).astype(np.float32)
        if texture == "graph":
            pattern = np.minimum(pattern, -((xs % period) < line).astype(np.float32))
        pattern = pattern * 2  # lines are twice the amplitude below the paper
    else:  # smooth noise: a coarse random grid, upsampled
        cells = max(2, round(long / period))
        coarse = np.random.default_rng(scene.noise_seed).uniform(-1, 1, (cells, cells)).astype(np.float32)
        pattern = np.asarray(Image.fromarray(coarse, mode="F").resize((width, height), Image.Resampling.BICUBIC))
        pattern = np.clip(pattern, -1, 1)
    return pixels + look.texture_amplitude * pattern[..., None]


# ----------------------------------------------------------------------------- shapes


def shape_radius(shape: Shape, width: int, height: int) -> float:
    """Radius in px: the size word's share of the smaller side of a grid cell, times the shape's scale."""
    return SIZES[shape.size] * shape.scale * min(width, height) / 3


def _outline(shape: Shape, cx: float, cy: float, r: float) -> list[tuple[float, float]]:
    if shape.kind == "circle":
        n = 96
        points = [(cx + r * math.cos(2 * math.pi * i / n), cy + r * math.sin(2 * math.pi * i / n)) for i in range(n)]
    else:
        points = scenes.shape_polygon(shape.kind, cx, cy, r)
    if shape.rotation:
        a = math.radians(-shape.rotation)  # counter-clockwise on screen (y points down)
        cos, sin = math.cos(a), math.sin(a)
        points = [(cx + (x - cx) * cos - (y - cy) * sin, cy + (x - cx) * sin + (y - cy) * cos) for x, y in points]
    return points


def _hand_drawn(points: list[tuple[float, float]], r: float, rng: random.Random) -> list[tuple[float, float]]:
    """The closed outline as a wobbly hand-drawn polyline: resampled along its length, pushed in and
    out by a smooth random wave, with a little overshoot where the pen closes the loop."""
    closed = [*points, points[0]]
    lengths = [math.dist(a, b) for a, b in zip(closed, closed[1:])]
    total = sum(lengths)
    n = max(24, round(total / (0.12 * r)))
    waves = [(rng.uniform(0.015, 0.045) * r, rng.randint(1, 3), rng.uniform(0, 2 * math.pi)) for _ in range(2)]
    out, seg, walked = [], 0, 0.0
    for i in range(n + max(2, n // 12)):  # the overshoot
        t = (i % n) * total / n
        while seg < len(lengths) - 1 and walked + lengths[seg] < t:
            walked += lengths[seg]
            seg += 1
        if i % n == 0:
            seg, walked = 0, 0.0
        f = (t - walked) / lengths[seg] if lengths[seg] else 0.0
        (x0, y0), (x1, y1) = closed[seg], closed[seg + 1]
        x, y = x0 + (x1 - x0) * f, y0 + (y1 - y0) * f
        nx, ny = (y1 - y0) / (lengths[seg] or 1), -(x1 - x0) / (lengths[seg] or 1)  # normal
        push = sum(a * math.sin(k * 2 * math.pi * i / n + p) for a, k, p in waves) + rng.gauss(0, 0.008 * r)
        out.append((x + nx * push, y + ny * push))
    return out


def _stroke_width(shape: Shape, r: float, long: int, rng: random.Random) -> float:
    floor = max(1.5, 0.014 * long)
    return max(floor, r * rng.uniform(0.12, 0.24))


def _draw_shapes(scene: Scene, draw: ImageDraw.ImageDraw, labels: ImageDraw.ImageDraw, ss: int) -> None:
    look = scene.look
    width, height = look.width * ss, look.height * ss
    for i, shape in enumerate(scene.shapes):
        rng = random.Random(f"{look.seed}/shape/{i}")
        x, y = shape.center
        cx, cy, r = x * width, y * height, shape_radius(shape, width, height)
        rgb = shape.rgb or COLOR_NAMES[shape.color]
        points = _outline(shape, cx, cy, r)
        stroke = round(_stroke_width(shape, r, max(width, height), rng))
        label = i + 1
        if shape.style in ("filled", "outlined"):
            for target, ink in ((draw, rgb), (labels, label)):
                target.polygon(points, fill=ink)
            if shape.style == "outlined":
                edge = tuple(round(c * rng.uniform(0.2, 0.5)) for c in rgb)
                draw.line([*points, points[0]], fill=edge, width=max(1, stroke // 3), joint="curve")
        elif shape.style == "outline":
            for target, ink in ((draw, rgb), (labels, label)):
                target.line([*points, points[0]], fill=ink, width=stroke, joint="curve")
        else:  # sketch, sketch-filled
            passes = 2 if rng.random() < 0.4 else 1
            for _ in range(passes):
                wobbly = _hand_drawn(points, r, rng)
                if shape.style == "sketch-filled":
                    for target, ink in ((draw, rgb), (labels, label)):
                        target.polygon(wobbly, fill=ink)
                for target, ink in ((draw, rgb), (labels, label)):
                    target.line(wobbly, fill=ink, width=max(1, stroke // (2 if shape.style == "sketch-filled" else 1)))


def _draw_word(scene: Scene, draw: ImageDraw.ImageDraw, width: int, height: int) -> None:
    word = scene.word
    font = scenes._font(max(6, round(height / 3 * 0.62)))
    if font.getlength(word.text) > 0.8 * width:
        font = scenes._font(max(6, round(height / 3 * 0.62 * 0.8 * width / font.getlength(word.text))))
    fill = COLOR_NAMES[word.color]
    stroke = max(1, round(font.size * 0.056))
    draw.text(((0.5 + word.dx) * width, (word.row + 0.5) * height / 3), word.text, font=font, fill=fill,
              anchor="mm", stroke_width=stroke, stroke_fill=fill)  # fmt: skip


# ----------------------------------------------------------------------------- capture


def _homography(src: list[tuple[float, float]], dst: list[tuple[float, float]]) -> np.ndarray:
    """3x3 H with H @ (x, y, 1) ~ dst for each src point."""
    rows, rhs = [], []
    for (x, y), (u, v) in zip(src, dst):
        rows += [[x, y, 1, 0, 0, 0, -u * x, -u * y], [0, 0, 0, x, y, 1, -v * x, -v * y]]
        rhs += [u, v]
    h = np.linalg.solve(np.array(rows, dtype=np.float64), np.array(rhs, dtype=np.float64))
    return np.append(h, 1.0).reshape(3, 3)


def _quad(warp: tuple[float, ...]) -> list[tuple[float, float]]:
    """The part of the canvas the webcam sees (fractions): corners TL, TR, BR, BL moved inwards."""
    a = warp
    return [(a[0], a[1]), (1 - a[2], a[3]), (1 - a[4], 1 - a[5]), (a[6], 1 - a[7])]


FRAME = [(0.0, 0.0), (1.0, 0.0), (1.0, 1.0), (0.0, 1.0)]


def captured_point(look: Look, x: float, y: float) -> tuple[float, float]:
    """Where a point of the canvas (fractions) lands in the captured picture (fractions)."""
    if not look.warp:
        return x, y
    u, v, w = _homography(_quad(look.warp), FRAME) @ np.array([x, y, 1.0])
    return float(u / w), float(v / w)


def _warp(image: Image.Image, look: Look, resample) -> Image.Image:
    width, height = image.size
    to_canvas = _homography(FRAME, _quad(look.warp))  # output fractions -> canvas fractions
    scale, unscale = np.diag([width, height, 1.0]), np.diag([1 / width, 1 / height, 1.0])
    h = scale @ to_canvas @ unscale
    h = h / h[2, 2]
    return image.transform(image.size, Image.Transform.PERSPECTIVE, tuple(h.flatten()[:8]), resample)


def lighting(look: Look, x: float, y: float) -> np.ndarray:
    """(3,) gain the capture's colour cast and vignetting put on a colour at (x, y) (fractions)."""
    fall = 1 - look.vignette * min(1.0, ((x - 0.5) ** 2 + (y - 0.5) ** 2) * 2)
    return np.array(look.cast, dtype=np.float32) * fall


def _capture(image: Image.Image, look: Look) -> Image.Image:
    long = max(image.size)
    if look.warp:
        image = _warp(image, look, Image.Resampling.BICUBIC)
    if look.blur:
        image = image.filter(ImageFilter.GaussianBlur(look.blur * long))
    if look.cast != (1.0, 1.0, 1.0) or look.vignette or look.noise:
        pixels = np.asarray(image, dtype=np.float32)  # (H, W, 3)
        height, width = pixels.shape[:2]
        ys, xs = np.mgrid[0:height, 0:width].astype(np.float32)
        fall = 1 - look.vignette * np.minimum(1.0, ((xs / width - 0.5) ** 2 + (ys / height - 0.5) ** 2) * 2)
        pixels = pixels * np.array(look.cast, dtype=np.float32) * fall[..., None]
        if look.noise:
            pixels += np.random.default_rng(look.seed).normal(0, look.noise, pixels.shape).astype(np.float32)
        image = Image.fromarray(np.clip(pixels.round(), 0, 255).astype(np.uint8), mode="RGB")
    return image


def _jpeg(image: Image.Image, quality: int) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=quality)
    return buffer.getvalue()


def _render(scene: Scene) -> tuple[Image.Image, np.ndarray]:
    """The picture before JPEG, and (H, W) uint8 labels: i + 1 where shape i's ink is, after the capture."""
    look = scene.look
    ss = max(1, min(look.supersample, MAX_SUPERSAMPLED // max(look.width, look.height)))
    big = (look.width * ss, look.height * ss)
    pixels = background_pixels(scene, *big)
    image = Image.fromarray(np.clip(pixels.round(), 0, 255).astype(np.uint8), mode="RGB")
    labels = Image.new("L", big, 0)
    _draw_shapes(scene, ImageDraw.Draw(image), ImageDraw.Draw(labels), ss)
    if scene.word:
        _draw_word(scene, ImageDraw.Draw(image), *big)
    size = (look.width, look.height)
    if ss > 1:
        image = image.resize(size, Image.Resampling.LANCZOS)
        labels = labels.resize(size, Image.Resampling.NEAREST)
    if look.warp:
        labels = _warp(labels, look, Image.Resampling.NEAREST)
    return _capture(image, look), np.asarray(labels)


def render_varied(scene: Scene) -> Image.Image:
    """The varied scene's picture as it is saved (JPEG artefacts included when the look has them)."""
    image, _ = _render(scene)
    if scene.look.jpeg:
        with Image.open(io.BytesIO(_jpeg(image, scene.look.jpeg))) as decoded:
            return decoded.convert("RGB")
    return image


def encode_scene(scene: Scene, size: int = 128) -> tuple[bytes, str]:
    """The file a scene is saved as: (bytes, ".jpg") for a varied scene with JPEG artefacts
    (encoded once), else (PNG bytes, ".png"); a plain scene is drawn at size x size."""
    if scene.look is not None and scene.look.jpeg:
        return _jpeg(_render(scene)[0], scene.look.jpeg), ".jpg"
    buffer = io.BytesIO()
    scenes.render_scene(scene, size).save(buffer, format="PNG", optimize=False, compress_level=6)
    return buffer.getvalue(), ".png"


# ----------------------------------------------------------------------------- what stays visible


def visible_shapes(scene: Scene) -> list[bool]:
    """For each shape, whether a person would still see it, with its colour, in the final pixels."""
    image, labels = _render(scene)
    if scene.look.jpeg:
        with Image.open(io.BytesIO(_jpeg(image, scene.look.jpeg))) as decoded:
            image = decoded.convert("RGB")
    pixels = np.asarray(image, dtype=np.float32)
    look = scene.look
    long = max(look.width, look.height)
    ink_all = Image.fromarray(((labels > 0) * 255).astype(np.uint8))
    near_ink = np.asarray(ink_all.filter(ImageFilter.MaxFilter(5))) > 0
    result = []
    for i, shape in enumerate(scene.shapes):
        ink = labels == i + 1
        drawn = ink.sum()
        x, y = shape.center
        r = shape_radius(shape, look.width, look.height)
        expected = _ink_area(shape, r, long)
        if not drawn or drawn < MIN_VISIBLE_SHARE * expected or 2 * r * 0.9 < MIN_DIAMETER * long:
            result.append(False)
            continue
        core = np.asarray(Image.fromarray((ink * 255).astype(np.uint8)).filter(ImageFilter.MinFilter(3))) > 0
        colour = np.median(pixels[core if core.sum() >= 12 else ink], axis=0)  # (3,)
        cx, cy = captured_point(look, x, y)
        gain = lighting(look, cx, cy)
        palette = {n: tuple(np.clip(np.array(v) * gain, 0, 255)) for n, v in COLOR_NAMES.items()}
        if nearest_name(colour, palette) != shape.color:
            result.append(False)
            continue
        ys, xs = np.nonzero(ink)
        pad = max(3, round(0.3 * r))
        box = (slice(max(0, ys.min() - pad), ys.max() + pad + 1), slice(max(0, xs.min() - pad), xs.max() + pad + 1))
        around = ~near_ink[box]
        if around.sum() < 8:
            result.append(True)
            continue
        far = np.linalg.norm(pixels[box][around] - colour, axis=1) >= MIN_SURROUND_CONTRAST
        result.append(bool(far.mean() >= 0.75))
    return result


def _ink_area(shape: Shape, r: float, long: int) -> float:
    """About how many px the shape's ink covers before the capture (a lower bound for outlines)."""
    if shape.style in ("outline", "sketch"):
        perimeter = 2 * math.pi * r  # about; every kind's outline is near a circle's
        return 0.5 * perimeter * max(1.5, 0.014 * long)
    share = {"circle": 3.14, "square": 2.96, "triangle": 1.72, "star": 1.1, "diamond": 2.42, "cross": 2.3}
    return share[shape.kind] * r * r * 0.7


# ----------------------------------------------------------------------------- drawing a varied scene


def _canvas(rng: random.Random) -> tuple[int, int]:
    long = round(math.exp(rng.uniform(math.log(LONG_SIDE[0]), math.log(LONG_SIDE[1]))))
    draw = rng.random()
    if draw < PROBABILITIES["square canvas"]:
        aspect = 1.0
    elif draw < PROBABILITIES["square canvas"] + PROBABILITIES["common aspect"]:
        aspect = rng.choice(COMMON_ASPECTS)
    else:
        aspect = math.exp(rng.uniform(math.log(ASPECTS[0]), math.log(ASPECTS[1])))
    return (long, max(16, round(long / aspect))) if aspect >= 1 else (max(16, round(long * aspect)), long)


def _background_spec(rng: random.Random, kinds: tuple[str, ...], look: Look) -> tuple[dict, Look]:
    weights = [BACKGROUND_WEIGHTS.get(k, 0.1) for k in kinds]
    kind = rng.choices(kinds, weights)[0]
    if kind == "photo" and not any(photo_available(p) for p in PHOTO_BACKGROUNDS):
        kind = "gradient"
    spec = {"background": kind, "texture": "", "direction": "", "noise_seed": 0}
    if kind == "white":
        spec["colors"] = (tuple(rng.randint(236, 255) for _ in range(3)),)
    elif kind == "black":
        spec["colors"] = (tuple(rng.randint(0, 28) for _ in range(3)),)
    elif kind == "plain":
        spec["colors"] = (_random_tint(rng),)
    elif kind == "gradient":
        first = _random_tint(rng)
        light = scenes._is_light(first)
        second = next((c for c in (_random_tint(rng) for _ in range(20)) if scenes._is_light(c) == light), first)
        spec["colors"] = (first, second)
        spec["direction"] = rng.choice(("horizontal", "vertical", "diagonal", "radial"))
    elif kind == "textured":
        texture = rng.choice(TEXTURES)
        paper = texture in ("lined", "graph")
        spec["colors"] = (tuple(rng.randint(232, 252) for _ in range(3)) if paper else _random_tint(rng),)
        spec["texture"], spec["noise_seed"] = texture, rng.randrange(2**31)
        look = replace(look, texture_amplitude=round(rng.uniform(25, 45) if paper else rng.uniform(10, 36), 1),
                       texture_period=round(rng.uniform(0.03, 0.07), 4))  # fmt: skip
    else:
        name = rng.choice([p for p in PHOTO_BACKGROUNDS if photo_available(p)])
        keep = rng.uniform(0.3, 0.8)
        w, h = _photo_pixels(name).size
        aspect = look.width / look.height  # the crop has the canvas' aspect
        cw = min(1.0, keep * max(1.0, aspect * h / w))
        ch = min(1.0, cw * w / aspect / h)
        x0, y0 = rng.uniform(0, 1 - cw), rng.uniform(0, 1 - ch)
        box = (round(x0, 4), round(y0, 4), round(x0 + cw, 4), round(y0 + ch, 4))
        blur, fade = round(rng.uniform(0.006, 0.02), 4), round(rng.uniform(0.35, 0.7), 3)
        look = replace(look, photo=name, photo_box=box, photo_blur=blur, photo_fade=fade)
        spec["colors"] = ((0, 0, 0),)
    return spec, look


def _capture_spec(rng: random.Random, look: Look) -> Look:
    p = PROBABILITIES
    changes: dict = {"supersample": 1 if rng.random() < p["aliased"] else rng.choice((2, 3))}
    if rng.random() < p["webcam"]:
        changes.update(
            warp=tuple(round(rng.uniform(0, 0.07), 4) for _ in range(8)),
            blur=round(rng.uniform(0.0015, 0.005), 4),
            noise=round(rng.uniform(3, 10), 2),
            cast=tuple(round(rng.uniform(0.88, 1.12), 3) for _ in range(3)),
            vignette=round(rng.uniform(0.1, 0.35), 3),
            jpeg=rng.randint(40, 85),
        )
    else:
        if rng.random() < p["noise"]:
            changes["noise"] = round(rng.uniform(2, 9), 2)
        if rng.random() < p["blur"]:
            changes["blur"] = round(rng.uniform(0.001, 0.004), 4)
        if rng.random() < p["jpeg"]:
            changes["jpeg"] = rng.randint(30, 90)
    return replace(look, **changes)


def _usable_colours(region: np.ndarray) -> list[str]:
    """Shape colours far (MIN_CONTRAST) from at least 90% of the background pixels in `region` (N, 3)."""
    usable = []
    for name in scenes.SHAPE_COLORS:
        far = np.linalg.norm(region - np.array(COLOR_NAMES[name], dtype=np.float32), axis=1) >= MIN_CONTRAST
        if far.mean() >= 0.9:
            usable.append(name)
    return usable


def _shape_spec(rng, kind, size, row, col, colour, look: Look, lone: bool) -> Shape:
    width, height = look.width, look.height
    scale = rng.uniform(0.85, 1.12)
    if lone and rng.random() < PROBABILITIES["big lone shape"]:
        size, scale = "large", rng.uniform(1.4, 2.6)
    rotation = round(rng.uniform(-ROTATION[kind], ROTATION[kind]), 1) if rng.random() < PROBABILITIES["rotated"] else 0
    style = rng.choices(tuple(STYLES), tuple(STYLES.values()))[0]
    rgb = _vary_colour(rng, colour) if rng.random() < PROBABILITIES["exact colour varied"] else None
    # Room for the centre: inside its third, and the shape inside its cell (inside the canvas when lone).
    while True:
        reach = EXTENT * SIZES[size] * scale * min(width, height) / 3  # px
        rx, ry = reach / (width / 3), reach / (height / 3)  # in cells
        if lone:
            room_x = min(0.4, 0.5 + col - rx - 0.03 * 3, 2.5 - col - rx - 0.03 * 3)
            room_y = min(0.4, 0.5 + row - ry - 0.03 * 3, 2.5 - row - ry - 0.03 * 3)
        else:
            room_x, room_y = 0.5 - rx - 0.05, 0.5 - ry - 0.05
        if (room_x >= 0 and room_y >= 0) or scale < 0.5:
            break
        scale *= 0.9
    room_x, room_y = max(0.0, room_x), max(0.0, room_y)
    return Shape(kind=kind, color=colour, size=size, row=row, col=col, dx=round(rng.uniform(-room_x, room_x), 3),
                 dy=round(rng.uniform(-room_y, room_y), 3), rotation=rotation, style=style, scale=round(scale, 3),
                 rgb=rgb)  # fmt: skip


def _positions_hold(scene: Scene) -> bool:
    """Under the look's warp, every shape's centre stays in its third and the shape in the frame."""
    look = scene.look
    for shape in scene.shapes:
        x, y = shape.center
        u, v = captured_point(look, x, y)
        for before, after in ((x, u), (y, v)):
            third = min(int(before * 3), 2)
            if not third + 0.06 <= after * 3 <= third + 0.94:  # in the same third, not on its edge
                return False
        r = EXTENT * shape_radius(shape, look.width, look.height)
        for px, py in (
            (x - r / look.width, y),
            (x + r / look.width, y),
            (x, y - r / look.height),
            (x, y + r / look.height),
        ):
            cu, cv = captured_point(look, px, py)
            if not (0 <= cu <= 1 and 0 <= cv <= 1):
                return False
    return True


def _layout(rng: random.Random, look: Look, spec: dict, min_shapes, max_shapes, word_probability) -> Scene:
    width, height = look.width, look.height
    probe = Scene(look=replace(look, width=max(8, round(96 * width / max(width, height))),
                               height=max(8, round(96 * height / max(width, height)))), shapes=(), **spec)  # fmt: skip
    small = background_pixels(probe, probe.look.width, probe.look.height)  # (h, w, 3)
    h, w = small.shape[:2]

    def region(row: int, col: int | None = None) -> np.ndarray:
        cols = slice(0, w) if col is None else slice(col * w // 3, (col + 1) * w // 3)
        return small[row * h // 3 : (row + 1) * h // 3, cols].reshape(-1, 3)

    cells = [(r, c) for r in range(3) for c in range(3)]
    word = None
    if rng.random() < word_probability:
        row = rng.randrange(3)
        lightness = region(row) @ np.array([0.299, 0.587, 0.114], dtype=np.float32)
        colour = "black" if np.mean(lightness > 150) > 0.95 else "white" if np.mean(lightness < 100) > 0.95 else ""
        if colour:
            word = Word(text=rng.choice(WORDS), row=row, dx=round(rng.uniform(-0.08, 0.08), 3), color=colour)
            cells = [(r, c) for r, c in cells if r != row]
    n = rng.randint(min_shapes, min(max_shapes, len(cells)))
    chosen = rng.sample(cells, n)
    if n == 1 and (1, 1) in cells and rng.random() < 0.4:  # a lone shape is often drawn in the middle
        chosen = [(1, 1)]
    shapes = []
    for row, col in sorted(chosen, key=lambda rc: (rc[1], rc[0])):
        usable = _usable_colours(region(row, col))
        kind, size = rng.choice(SHAPES), rng.choice(tuple(SIZES))
        if not usable:
            continue
        shapes.append(_shape_spec(rng, kind, size, row, col, rng.choice(usable), look, lone=n == 1))
    return Scene(shapes=tuple(shapes), word=word, look=look, **spec)


def varied_scene(rng: random.Random, min_shapes: int = 1, max_shapes: int = 5, word_probability: float = 0.3,
                 backgrounds: tuple[str, ...] | None = None) -> Scene:  # fmt: skip
    """A random varied scene (see the module docstring); everything drawn from `rng`."""
    kinds = tuple(backgrounds or BACKGROUND_KINDS)
    for _attempt in range(12):
        width, height = _canvas(rng)
        look = Look(width=width, height=height, seed=rng.randrange(2**31))
        spec, look = _background_spec(rng, kinds, look)
        look = _capture_spec(rng, look)
        scene = _layout(rng, look, spec, min_shapes, max_shapes, word_probability)
        for _ in range(3):  # a warp that moves a shape out of its third is made milder
            if _positions_hold(scene):
                break
            scene = replace(scene, look=replace(scene.look, warp=tuple(round(a / 2, 4) for a in scene.look.warp)))
        else:
            scene = replace(scene, look=replace(scene.look, warp=()))
        if not _positions_hold(scene):
            continue
        seen = visible_shapes(scene) if scene.shapes else []
        scene = replace(scene, shapes=tuple(s for s, ok in zip(scene.shapes, seen) if ok))
        if len(scene.shapes) >= min_shapes:
            return scene
    return scene

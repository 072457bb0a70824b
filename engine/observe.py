"""Observations from offline pretrained tools, given to the model as text.

    observe_image(image, tools=("ocr", "faces", "colors", "shapes")) -> ImageObservations
    ImageObservations.as_text()  # "text: HELLO 42; faces: 1; colors: white, black; shapes: red circle"

- `ocr`: PP-OCRv4 (ONNX, shipped inside `rapidocr-onnxruntime`), lines above a confidence.
- `faces`: OpenCV's Haar frontal-face detector (shipped inside `opencv-python`).
- `colors`: the dominant colours of the picture, by name (median-cut palette → nearest name).
- `shapes`: on a plain background only, the shapes drawn on it with their colours
  (engine.shapes: OpenCV contours); nothing is said about photos.

The same code runs when the training data is encoded and when a person chats, so the
model learns to use what these tools report. Each tool loads once per process, lazily and
thread-safely; results are cached by image content (a photo shown in every turn of a
conversation is read once).
"""

from __future__ import annotations

import functools
import hashlib
import threading
from dataclasses import dataclass, field

import numpy as np
from PIL import Image

from engine.cache import LRUCache

TOOLS = ("ocr", "faces", "colors", "shapes")
OCR_MIN_CONFIDENCE = 0.6
OCR_MIN_SIDE = 256
COLOR_MIN_SHARE = 0.12

# Named colours the model talks about, as sRGB (the scene generator uses the same names).
COLOR_NAMES = {
    "red": (220, 30, 30),
    "orange": (245, 140, 20),
    "yellow": (245, 220, 30),
    "green": (40, 170, 60),
    "blue": (30, 80, 220),
    "purple": (140, 50, 170),
    "pink": (245, 150, 190),
    "brown": (130, 80, 40),
    "black": (15, 15, 15),
    "white": (245, 245, 245),
    "gray": (128, 128, 128),
    "cyan": (40, 200, 220),
}
_NAMES = list(COLOR_NAMES)
_PALETTE = np.array([COLOR_NAMES[n] for n in _NAMES], dtype=np.float32)  # (K, 3)

_lock = threading.Lock()


@dataclass(frozen=True)
class ImageObservations:
    text: tuple[str, ...] = ()  # lines read in the image
    faces: int | None = None  # None when the face tool did not run
    colors: tuple[str, ...] = ()  # dominant colour names, most covering first
    shapes: tuple[str, ...] | None = None  # "red circle", ... left to right; None: not a plain background
    tools: tuple[str, ...] = field(default=())

    def as_text(self) -> str:
        parts = []
        if "ocr" in self.tools:
            parts.append("text: " + (" | ".join(self.text) if self.text else "none"))
        if "faces" in self.tools:
            parts.append(f"faces: {self.faces}")
        if "colors" in self.tools:
            parts.append("colors: " + ", ".join(self.colors))
        if "shapes" in self.tools and self.shapes is not None:
            parts.append("shapes: " + (", ".join(self.shapes) if self.shapes else "none"))
        return "; ".join(parts)

    def as_sentences(self) -> str:
        """The findings in plain words, for a language model that was not trained on `as_text`'s
        lines: "A drawing of 2 shapes on a white background: a green circle and a blue triangle. ..."."""
        sentences = []
        if self.shapes:
            ground = f"a {self.colors[0]} background" if self.colors else "a plain background"
            count = f"{_number(len(self.shapes))} shape" + ("s" if len(self.shapes) > 1 else "")
            sentences.append(f"It is a drawing of {count} on {ground}: {_listing(self.shapes)}.")
        elif self.shapes is not None:  # the colour tool's finding stays: "a plain gray picture"
            colour = f" {self.colors[0]}" if self.colors else ""
            sentences.append(f"It is a plain{colour} picture with no shapes drawn on it.")
        elif self.colors:
            verb = "colour is" if len(self.colors) == 1 else "colours are"
            sentences.append(f"Its main {verb} {_listing(self.colors, article=False)}.")
        if "ocr" in self.tools:
            text = " ".join(line for line in self.text if any(c.isalnum() for c in line))  # not "+", "■": shapes
            sentences.append(f'The text in it reads "{text}".' if text else "There is no text in it.")
        if self.faces:
            sentences.append(f"There {'is one face' if self.faces == 1 else f'are {_number(self.faces)} faces'} in it.")
        elif self.faces == 0 and self.shapes is None:
            sentences.append("No faces were found in it.")
        return " ".join(sentences)


def _number(n: int) -> str:
    words = ("no", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten")
    return words[n] if n < len(words) else str(n)


def _listing(names, article: bool = True) -> str:
    """("green circle", "blue triangle") -> "a green circle and a blue triangle"."""
    words = [(("an " if name[0] in "aeiou" else "a ") if article else "") + name for name in names]
    return words[0] if len(words) == 1 else ", ".join(words[:-1]) + " and " + words[-1]


def nearest_color_name(rgb) -> str:
    distances = ((_PALETTE - np.asarray(rgb, dtype=np.float32)) ** 2).sum(axis=1)
    return _NAMES[int(distances.argmin())]


def dominant_colors(image: Image.Image, max_colors: int = 3) -> tuple[str, ...]:
    """Colour names covering at least COLOR_MIN_SHARE of the picture, most covering first."""
    small = image.convert("RGB").resize((64, 64), Image.Resampling.BILINEAR)
    quantized = small.quantize(colors=8, method=Image.Quantize.MEDIANCUT)
    palette = np.array(quantized.getpalette()[: 8 * 3], dtype=np.float32).reshape(-1, 3)  # (8, 3)
    shares: dict[str, float] = {}
    for count, index in quantized.getcolors():
        name = nearest_color_name(palette[index])
        shares[name] = shares.get(name, 0.0) + count / (64 * 64)
    ranked = sorted(shares.items(), key=lambda item: -item[1])
    return tuple(name for name, share in ranked if share >= COLOR_MIN_SHARE)[:max_colors]


@functools.cache
def _ocr_engine():
    from rapidocr_onnxruntime import RapidOCR

    # No angle classifier (upright text), and small pictures are upscaled to 256 px on their
    # short side rather than the default 736: ~10x faster, and on the generated scenes it reads
    # as many words (123 of 124 held-out words) with fewer shapes mistaken for symbols.
    return RapidOCR(use_cls=False, det_limit_side_len=OCR_MIN_SIDE)


@functools.cache
def _face_detector():
    import cv2

    return cv2.CascadeClassifier(cv2.data.haarcascades + "haarcascade_frontalface_default.xml")


def read_text(image: Image.Image) -> tuple[str, ...]:
    with _lock:
        engine = _ocr_engine()
    result, _ = engine(np.asarray(image.convert("RGB"))[:, :, ::-1].copy())  # RGB -> BGR, as OpenCV reads
    lines = [(box, text) for box, text, score in (result or []) if float(score) >= OCR_MIN_CONFIDENCE and text.strip()]
    lines.sort(key=lambda item: (item[0][0][1], item[0][0][0]))  # top to bottom, then left to right
    return tuple(text.strip() for _, text in lines)


def count_faces(image: Image.Image) -> int:

    with _lock:
        detector = _face_detector()
    grey = np.asarray(image.convert("L"))
    side = min(grey.shape)
    faces = detector.detectMultiScale(grey, scaleFactor=1.1, minNeighbors=6, minSize=(max(24, side // 10),) * 2)
    return int(len(faces))


def _find_shapes(image: Image.Image) -> tuple[str, ...] | None:
    from engine.shapes import find_shapes

    return find_shapes(image)


def _run_tools(image: Image.Image, tools: tuple[str, ...]) -> ImageObservations:
    return ImageObservations(
        text=read_text(image) if "ocr" in tools else (),
        faces=count_faces(image) if "faces" in tools else None,
        colors=dominant_colors(image) if "colors" in tools else (),
        shapes=_find_shapes(image) if "shapes" in tools else None,
        tools=tools,
    )


# What the tools said, by (pixel digest, tools): a picture shown in every turn is read once.
_observe_cached: LRUCache[ImageObservations] = LRUCache(maxsize=512)


# Observations loaded from a disk cache (lab.observe_cache): (digest, tools) -> result.
_known: dict[tuple[str, tuple[str, ...]], ImageObservations] = {}


def image_digest(image: Image.Image) -> str:
    """The key observations are cached under: a hash of the pixels and the size."""
    return hashlib.sha256(image.tobytes() + repr(image.size).encode()).hexdigest()


def ordered_tools(tools) -> tuple[str, ...]:
    unknown = set(tools) - set(TOOLS)
    if unknown:
        raise ValueError(f"Unknown observation tools: {', '.join(sorted(unknown))}")
    return tuple(t for t in TOOLS if t in tools)


def remember(digest: str, observations: ImageObservations) -> None:
    """Make `observe_image` answer for this picture without running the tools again."""
    _known[(digest, observations.tools)] = observations


def observe_image(image: Image.Image, tools: tuple[str, ...] = TOOLS, digest: str | None = None) -> ImageObservations:
    """Run the chosen tools on an RGB image (results cached by pixel content)."""
    tools = ordered_tools(tools)
    digest = digest or image_digest(image)
    known = _known.get((digest, tools))
    if known is not None:
        return known
    return _observe_cached.get_or_compute((digest, tools), lambda: _run_tools(image, tools))

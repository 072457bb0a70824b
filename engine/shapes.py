"""Shapes on a plain background, found by classical vision (OpenCV contours), as an observation tool.

    find_shapes(image) -> ("green circle", "blue triangle")   # left to right
    find_shapes(photo) -> None                                  # not a plain background: no claim

A text-only language model cannot see; for drawings on a near-uniform background (a
whiteboard sketch, a diagram, a generated scene) this tool says which shapes are there and in
which colour, so the model can answer "what do you see?", "what colour is the triangle?" or
"how many shapes?". On anything else (photos, gradients, textures) it says nothing rather than
something wrong: the background must cover most of the picture's border in one colour.

How: the border's median colour is the background; pixels far from it are foreground; each
outer contour big enough is one shape, classified by its polygon (vertex count, right angles,
orientation), its roundness (4*pi*area/perimeter^2) and its convexity (area / hull area);
its colour is the median of its own pixels, named like `engine.observe`'s colours.
"""

from __future__ import annotations

import math

import cv2
import numpy as np
from PIL import Image

WORK_SIDE = 512  # px: the longer side the picture is analysed at
BORDER_SHARE = 0.85  # of the border's pixels near the background colour: else not a plain background
BACKGROUND_DISTANCE = 40.0  # RGB distance within which a pixel counts as background (border check)
FOREGROUND_DISTANCE = 70.0  # RGB distance beyond which a pixel is part of a shape
MIN_AREA_SHARE = 0.004  # of the picture: smaller blobs (letters, specks, noise) are not shapes
MAX_SHAPES = 8  # more blobs than this is a busy picture, not a drawing of shapes


def _background(rgb: np.ndarray) -> np.ndarray | None:
    """The background colour (3,) when the border is one colour, else None."""
    border = np.concatenate([rgb[:3].reshape(-1, 3), rgb[-3:].reshape(-1, 3), rgb[:, :3].reshape(-1, 3),
                             rgb[:, -3:].reshape(-1, 3)]).astype(np.float32)  # fmt: skip
    colour = np.median(border, axis=0)
    near = np.linalg.norm(border - colour, axis=1) <= BACKGROUND_DISTANCE
    return colour if near.mean() >= BORDER_SHARE else None


def _angles(polygon: np.ndarray) -> np.ndarray:
    """Interior angles (degrees) of a closed polygon (K, 2)."""
    before, after = np.roll(polygon, 1, axis=0) - polygon, np.roll(polygon, -1, axis=0) - polygon
    cosine = (before * after).sum(1) / (np.linalg.norm(before, axis=1) * np.linalg.norm(after, axis=1) + 1e-9)
    return np.degrees(np.arccos(np.clip(cosine, -1, 1)))


def _notches(contour: np.ndarray, area: float) -> int:
    """How many deep, equal notches the outline has (a star's 5, a cross's 4); 0 when they are
    not alike in depth (a horse, a hand, a logo)."""
    hull = cv2.convexHull(contour, returnPoints=False)
    try:
        defects = cv2.convexityDefects(contour, hull)
    except cv2.error:  # a self-touching outline
        return 0
    if defects is None:
        return 0
    depths = defects[:, 0, 3] / 256.0  # px
    deep = depths[depths > 0.12 * math.sqrt(area)]
    if len(deep) < 3 or deep.std() > 0.25 * deep.mean():
        return 0
    return len(deep)


def classify(contour: np.ndarray) -> str | None:
    """The shape's name from its outer contour (N, 1, 2), or None when it is none of the known ones."""
    area = cv2.contourArea(contour)
    perimeter = cv2.arcLength(contour, True)
    if area <= 0 or perimeter <= 0:
        return None
    hull = cv2.convexHull(contour)
    solidity = area / max(cv2.contourArea(hull), 1e-9)
    roundness = 4 * math.pi * area / perimeter**2
    polygon = cv2.approxPolyDP(contour, 0.035 * perimeter, True).reshape(-1, 2).astype(np.float32)
    hull_corners = len(cv2.approxPolyDP(hull, 0.04 * cv2.arcLength(hull, True), True))
    notches = _notches(contour, area) if solidity < 0.9 else 0
    if notches == 5 and hull_corners <= 6 and solidity < 0.72:
        return "star"
    if notches == 4 and 0.5 <= solidity < 0.9:
        return "cross"
    if solidity < 0.8:
        return None
    if roundness > 0.83 and len(polygon) >= 6:
        (_, _), (w, h), _ = cv2.minAreaRect(contour)
        return "circle" if min(w, h) / max(w, h, 1e-9) > 0.8 else "oval"
    if len(polygon) == 3:
        return "triangle"
    if len(polygon) == 4:
        right = np.all(np.abs(_angles(polygon) - 90) < 15)
        edge = polygon[1] - polygon[0]
        tilt = abs(math.degrees(math.atan2(edge[1], edge[0]))) % 90  # 0 (upright) .. 45 (on its corner)
        tilt = min(tilt, 90 - tilt)
        sides = np.linalg.norm(polygon - np.roll(polygon, -1, axis=0), axis=1)
        equal = sides.min() / sides.max() > 0.75
        if right and tilt < 25:
            return "square" if equal else "rectangle"
        if equal:
            return "diamond"
        return "rectangle" if right else None
    if len(polygon) == 5:
        return "pentagon"
    if len(polygon) == 6:
        return "hexagon"
    return None


def _colour_name(pixels: np.ndarray) -> str:
    """The pixels' colour name, or "multicoloured" when no one colour covers most of them."""
    from engine.observe import nearest_color_name

    pixels = pixels.reshape(-1, 3).astype(np.float32)
    median = np.median(pixels, axis=0)
    if (np.linalg.norm(pixels - median, axis=1) < FOREGROUND_DISTANCE).mean() < 0.6:
        return "multicoloured"
    return nearest_color_name(median)


def find_shapes(image: Image.Image) -> tuple[str, ...] | None:
    """The shapes on a plain background as "colour kind" names, left to right (then top to
    bottom); () when the background is plain and empty; None when it is not a plain background."""
    rgb = np.asarray(image.convert("RGB"))
    scale = WORK_SIDE / max(rgb.shape[:2])
    if scale < 1:
        rgb = cv2.resize(rgb, (round(rgb.shape[1] * scale), round(rgb.shape[0] * scale)), interpolation=cv2.INTER_AREA)
    background = _background(rgb)
    if background is None:
        return None
    distance = np.linalg.norm(rgb.astype(np.float32) - background, axis=2)  # (H, W)
    foreground = (distance > FOREGROUND_DISTANCE).astype(np.uint8)
    foreground = cv2.morphologyEx(foreground, cv2.MORPH_OPEN, np.ones((3, 3), np.uint8))
    contours, _ = cv2.findContours(foreground, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE)
    min_area = MIN_AREA_SHARE * rgb.shape[0] * rgb.shape[1]
    found = []
    for contour in contours:
        if cv2.contourArea(contour) < min_area:
            continue
        kind = classify(contour) or "shape"  # drawn, but none of the known kinds (a silhouette, a blob)
        filled = np.zeros(foreground.shape, np.uint8)
        cv2.drawContours(filled, [contour], -1, 1, thickness=-1)
        inside = (filled > 0) & (foreground > 0)
        outline = inside.sum() < 0.6 * filled.sum()  # a ring: drawn, not filled
        x, y, w, h = cv2.boundingRect(contour)
        name = f"{_colour_name(rgb[inside])} {kind}" + (" outline" if outline else "")
        found.append(((y + h / 2) // max(rgb.shape[0] / 3, 1), x + w / 2, name))
    if len(found) > MAX_SHAPES:
        return None
    return tuple(name for _, _, name in sorted(found, key=lambda f: (f[1], f[0])))

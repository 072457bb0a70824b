"""Contact sheets of scenes, to look at: `python -m lab.data.contact_sheet [--out docs/images]`.

Writes scenes-varied.png (16 varied training scenes, lab.data.variety) and scenes-second.png
(8 plain and 8 hard scenes of lab.data.second_renderer), each a 4x4 grid of thumbnails that
keep their aspect ratio, every one labelled with what its spec says is in it.
"""

from __future__ import annotations

import argparse
import random
import sys
from pathlib import Path

from PIL import Image, ImageDraw

from lab.data.scenes import Scene, _font, random_scene, render_scene
from lab.data.second_renderer import second_scene

CELL = 240  # px per thumbnail, caption included
CAPTION = 36


def _caption(scene: Scene, width: int = 36) -> list[str]:
    """What the spec lists, wrapped to lines of about `width` characters."""
    lines = [""]
    for item in (f"{s.color} {s.kind}" for s in scene.shapes):
        if lines[-1] and len(lines[-1]) + len(item) + 2 > width:
            lines.append("")
        lines[-1] += (", " if lines[-1] else "") + item
    return lines


def sheet(pictures: list[tuple[Scene, Image.Image, str]], columns: int = 4) -> Image.Image:
    rows = -(-len(pictures) // columns)
    canvas = Image.new("RGB", (columns * CELL, rows * CELL), (90, 90, 90))
    draw = ImageDraw.Draw(canvas)
    font = _font(11)
    for i, (scene, image, label) in enumerate(pictures):
        x, y = (i % columns) * CELL, (i // columns) * CELL
        thumb = image.copy()
        thumb.thumbnail((CELL - 8, CELL - CAPTION - 8), Image.Resampling.LANCZOS)
        canvas.paste(thumb, (x + (CELL - thumb.width) // 2, y + 4 + (CELL - CAPTION - 8 - thumb.height) // 2))
        lines = [f"{label} {image.width}x{image.height}", *_caption(scene)]
        for j, line in enumerate(lines[:3]):
            draw.text((x + 4, y + CELL - CAPTION + j * 11 - 1), line, font=font, fill=(240, 240, 240))
    return canvas


def varied_pictures(n: int = 16, seed: int = 0) -> list[tuple[Scene, Image.Image, str]]:
    out = []
    for i in range(n):
        scene = random_scene(random.Random(f"contact/{seed}/{i}"), variety=True)
        look = scene.look
        tags = [scene.background, scene.texture, "webcam" if look.warp else "", f"jpeg{look.jpeg}" if look.jpeg else ""]
        out.append((scene, render_scene(scene), " ".join(t for t in tags if t)))
    return out


def second_pictures(n: int = 16, seed: int = 0) -> list[tuple[Scene, Image.Image, str]]:
    out = []
    for i in range(n):
        setting = "plain" if i < n // 2 else "hard"
        scene, image = second_scene(random.Random(f"contact/{seed}/{setting}/{i}"), setting)
        out.append((scene, image, f"{setting} {scene.background}"))
    return out


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m lab.data.contact_sheet", description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, default=Path("docs/images"))
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    for name, pictures in (("scenes-varied.png", varied_pictures(seed=args.seed)),
                           ("scenes-second.png", second_pictures(seed=args.seed))):  # fmt: skip
        path = args.out / name
        sheet(pictures).quantize(colors=192, method=Image.Quantize.MEDIANCUT).save(path, optimize=True)
        print(f"{path}: {path.stat().st_size // 1024} kB")
    return 0


if __name__ == "__main__":
    sys.exit(main())

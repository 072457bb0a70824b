"""How well the shapes tool (engine.shapes) reads pictures it was never tuned on.

    python -m lab.shapes_eval [--scenes 300] [--seed 0]

Scenes come from lab.data.second_renderer (OpenCV drawing, its own colours and geometry,
4:3 canvases), which the tool was not written against; "plain" is the issue's bar (white
canvas, 1-3 filled upright shapes), "hard" adds backgrounds, rotation, outlines and
degradations. For each setting it prints: scenes where every shape was named with its
colour and nothing else (exact), shapes found (recall), count right, and how often the tool
stayed silent (no plain background). On photos it must stay silent or find nothing.
"""

from __future__ import annotations

import argparse
import collections
import random

from tqdm import tqdm

from engine.shapes import find_shapes


def _expected(scene) -> list[str]:
    return sorted(f"{shape.color} {shape.kind}" for shape in scene.shapes)


def evaluate_setting(setting: str, scenes: int, seed: int) -> dict[str, float]:
    from lab.data.second_renderer import second_scene

    totals = collections.Counter()
    mistakes = collections.Counter()
    for index in tqdm(range(scenes), desc=f"second renderer, {setting}", leave=False):
        scene, image = second_scene(random.Random(f"{seed}/{setting}/{index}"), setting)
        found = find_shapes(image)
        expected = _expected(scene)
        named = sorted(name.removesuffix(" outline") for name in (found or ()))
        totals["scenes"] += 1
        totals["shapes"] += len(expected)
        totals["silent"] += found is None
        totals["exact"] += named == expected
        totals["count"] += len(named) == len(expected)
        left = list(named)
        for name in expected:
            if name in left:
                left.remove(name)
                totals["found"] += 1
            else:
                mistakes[f"missed {name}"] += 1
        for name in left:
            mistakes[f"extra {name}"] += 1
    return {
        "exact": totals["exact"] / totals["scenes"],
        "recall": totals["found"] / max(totals["shapes"], 1),
        "count": totals["count"] / totals["scenes"],
        "silent": totals["silent"] / totals["scenes"],
        "mistakes": mistakes.most_common(6),
    }


def evaluate_photos() -> tuple[int, int]:
    """(photos where the tool claimed a shape, photos tried)."""
    from lab.data.photos import available_photos

    photos = available_photos()
    claimed = 0
    for photo in photos:
        from PIL import Image

        found = find_shapes(Image.open(photo.path).convert("RGB"))
        claimed += bool(found)
    return claimed, len(photos)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--scenes", type=int, default=300, help="scenes per setting (default 300)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    for setting in ("plain", "hard"):
        result = evaluate_setting(setting, args.scenes, args.seed)
        print(
            f"{setting:>5}: exact {result['exact']:.1%}  recall {result['recall']:.1%}  count {result['count']:.1%}"
            f"  silent {result['silent']:.1%}  ({args.scenes} scenes)"
        )
        if result["mistakes"]:
            print("       most frequent: " + ", ".join(f"{m} x{n}" for m, n in result["mistakes"]))
    claimed, tried = evaluate_photos()
    print(f"photos: a shape claimed on {claimed} of {tried}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

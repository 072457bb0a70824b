"""`python -m lab.data --out DIR [--seed 0] [--scenes N] [--sounds N] [--no-photos] [--no-chitchat] ...`"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from engine.types import EngineError
from lab.data.build import BuildConfig, build_dataset


def main(argv=None) -> int:
    defaults = BuildConfig(out=Path("data/builtin"))
    parser = argparse.ArgumentParser(
        prog="python -m lab.data", description="Build the built-in model's dataset (offline, reproducible)."
    )
    parser.add_argument("--out", type=Path, default=defaults.out, help="dataset folder (default: %(default)s)")
    parser.add_argument("--seed", type=int, default=defaults.seed)
    parser.add_argument("--scenes", type=int, default=defaults.scenes, help="train scenes (default: %(default)s)")
    parser.add_argument("--questions-per-scene", type=int, default=defaults.questions_per_scene)
    parser.add_argument(
        "--photos",
        action=argparse.BooleanOptionalAction,
        default=defaults.photos,
        help="include the photos that installed packages ship (default: yes)",
    )
    parser.add_argument("--photo-variants", type=int, default=defaults.photo_variants)
    parser.add_argument(
        "--sounds", type=int, default=defaults.sounds, help="train clips, 0 for none (default: %(default)s)"
    )
    parser.add_argument(
        "--chitchat",
        action=argparse.BooleanOptionalAction,
        default=defaults.chitchat,
        help="include the chatterbot-corpus dialogues (default: yes)",
    )
    parser.add_argument("--held-out-fraction", type=float, default=defaults.heldout_fraction, dest="heldout_fraction")
    parser.add_argument("--image-size", type=int, default=defaults.image_size, help="scene PNG side in pixels")
    parser.add_argument(
        "--variety",
        action=argparse.BooleanOptionalAction,
        default=defaults.variety,
        help="varied scenes: any canvas, backgrounds, styles and captures (default: no)",
    )
    parser.add_argument(
        "--cache",
        type=Path,
        default=None,
        dest="cache_dir",
        help="where rendered clips are kept (default: ~/.cache/multimodal-chat/sounds)",
    )
    parser.add_argument("--workers", type=int, default=defaults.workers, help="processes for rendering")
    args = parser.parse_args(argv)
    started = time.monotonic()
    try:
        manifest = build_dataset(BuildConfig(**vars(args)))
    except EngineError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    for split, counts in manifest["counts"].items():
        print(
            f"{split}: {counts['total']} conversations: "
            + ", ".join(f"{q} {n}" for q, n in counts.items() if q != "total")
        )
    if manifest["missing_photos"]:
        print("photos left out (package not installed): " + ", ".join(manifest["missing_photos"]))
    print(f"Wrote {args.out} in {time.monotonic() - started:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())

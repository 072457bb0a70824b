"""Does the image encoder see the scene? The training run's scene probe, read on held-out scenes.

    python -m lab.probe_check --run runs/builtin --data data/builtin [--limit 400]

Prints, over the held-out scenes, how many grid cells the probe (lab.scene_probe, saved in
RUN/last/scene_probe.pt) names right from the run's image tokens: the kind and the colour of
each shape, and the empty cells. High numbers here with poor answers mean the decoder does
not read what the image tokens hold; low numbers mean the image encoder does not see it.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

from engine import preprocess
from engine.loading import load_checkpoint
from engine.types import CheckpointError, EngineError
from lab.scene_probe import SceneProbe, scene_target


def probe_hits(run: Path, data: Path, limit: int = 400, batch_size: int = 50) -> tuple[int, dict[str, tuple[int, int]]]:
    """How many held-out scene images of `data` were read (the first `limit`), and (right, of)
    per kind of cell over them."""
    from lab.data import load_dataset

    model, _ = load_checkpoint(run / "model", device="cpu", dtype=torch.float32)
    weights = run / "last" / "scene_probe.pt"
    if not weights.is_file():
        raise CheckpointError(
            f"{weights} is missing: the run was trained without the scene probe, or its last/ folder was removed."
        )
    probe = SceneProbe(model.config, model.image_encoder.out_dim)
    try:
        state = torch.load(weights, map_location="cpu")
    except Exception as error:  # noqa: BLE001 - any unreadable file gets the same sentence
        raise CheckpointError(f"{weights} is corrupt: {error}") from None
    try:
        probe.load_state_dict(state)
    except (RuntimeError, TypeError, AttributeError) as error:
        raise CheckpointError(f"{weights} does not belong to {run / 'model'}: {error}") from None
    scenes: dict[str, dict] = {}
    for example in load_dataset(data, "heldout"):
        scene, images = example.meta.get("scene"), example.conversation.turns[0].images
        if scene and images and len(scenes) < limit:
            scenes.setdefault(str(images[0]), scene)
    if not scenes:
        raise EngineError(f"{data} has no held-out scenes.")
    totals: dict[str, tuple[int, int]] = {}
    items = list(scenes.items())
    for start in range(0, len(items), batch_size):
        chunk = items[start : start + batch_size]
        pixels = torch.stack([preprocess.load_image(path, model.config.image_size) for path, _ in chunk])
        with torch.no_grad():
            tokens = model.image_encoder(pixels)  # (N, P, C)
        targets = torch.stack([scene_target(scene) for _, scene in chunk])  # (N, 9, 2)
        for name, (right, of) in probe.hits(tokens, targets).items():
            before = totals.get(name, (0, 0))
            totals[name] = (before[0] + right, before[1] + of)
    return len(items), totals


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m lab.probe_check", description=__doc__.split("\n")[0])
    parser.add_argument("--run", default="runs/builtin", help="training run folder (model/ and last/)")
    parser.add_argument("--data", default="data/builtin", help="dataset folder from `python -m lab.data`")
    parser.add_argument("--limit", type=int, default=400, help="held-out scene images to read")
    args = parser.parse_args(argv)
    try:
        scenes, hits = probe_hits(Path(args.run), Path(args.data), args.limit)
    except EngineError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    print(f"{scenes} held-out scenes of {args.data}, read by the scene probe of {args.run}:")
    for name, (right, of) in hits.items():
        print(f"  {name}: {right} of {of} cells ({100 * right / max(of, 1):.1f}%)")
    return 0


if __name__ == "__main__":
    sys.exit(main())

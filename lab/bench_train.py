"""Time a training step padded as one batch against length-grouped micro-batches:
`python -m lab.bench_train [--config lab/configs/builtin.json] [--model assets/models/builtin]`.

Draws the batches the config's run draws at steps 0, 100, 200, … (same sources, weights and
scene quizzes), then times forward + backward of each, on the model's weights, both ways in
turn: `batch_loss` over the whole batch padded to its longest row (what training did before),
and `accumulate_gradients` (lab.length_groups). Prints the share of real tokens and the
median step time of each way, and their ratio; `--json` adds one JSON line.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import torch
from tqdm import tqdm

from engine.loading import load_checkpoint
from engine.prompt import build_prompt
from lab.batches import draw_batch, draw_weights
from lab.data import load_dataset
from lab.data.quiz import is_quizzable, quiz
from lab.length_groups import length_groups
from lab.losses import accumulate_gradients, batch_loss
from lab.observe_cache import OBSERVATION_CACHE, load_observations
from lab.scene_probe import SceneProbe, scene_target
from lab.train_config import TrainConfig


def draw_batches(cfg: TrainConfig, tokenizer, config, steps: int) -> list[tuple[list, list]]:
    """[(prompts, scene targets)] as the run draws them at steps 0, 100, 200, …"""
    examples = load_dataset(cfg.data, "train")
    weights = draw_weights(cfg, [e.source for e in examples])
    picks = [draw_batch(cfg, step, len(examples), weights) for step in range(0, 100 * steps, 100)]
    load_observations(
        [examples[i] for _, chosen in picks for i in chosen], config.observations, Path(cfg.data) / OBSERVATION_CACHE
    )
    batches = []
    for order, chosen in picks:
        conversations = [
            quiz(examples[i], order, cfg.scene_questions)
            if cfg.scene_questions > 1 and is_quizzable(examples[i])
            else examples[i].conversation
            for i in chosen
        ]
        prompts = [build_prompt(c, tokenizer, config, add_generation_prompt=False) for c in conversations]
        batches.append((prompts, [scene_target(examples[i].meta.get("scene")) for i in chosen]))
    return batches


def real_share(lengths: list[int], groups: list[list[int]]) -> float:
    return sum(lengths) / sum(len(g) * max(lengths[i] for i in g) for g in groups)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m lab.bench_train", description=__doc__.split("\n")[0])
    parser.add_argument(
        "--config", default="lab/configs/builtin.json", help="a TrainConfig JSON (data, batch, quizzes)"
    )
    parser.add_argument("--model", default="assets/models/builtin", help="checkpoint whose shape and tokenizer to time")
    parser.add_argument("--steps", type=int, default=20, help="batches to time (each both ways)")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    cfg = TrainConfig(**json.loads(Path(args.config).read_text()))
    device = torch.device("cpu")
    model, tokenizer = load_checkpoint(args.model, device=device, dtype=torch.float32)
    model.train().requires_grad_(True)
    probe = SceneProbe(model.config, model.image_encoder.out_dim)
    batches = draw_batches(cfg, tokenizer, model.config, args.steps)

    def padded(prompts, targets):
        loss, _, probe_loss = batch_loss(model, prompts, device, probe, targets)
        (loss if probe_loss is None else loss + probe_loss).backward()

    ways = {
        "one padded batch": padded,
        "length-grouped micro-batches": lambda p, t: accumulate_gradients(model, p, device, probe, t),
    }
    times = {name: [] for name in ways}
    for index, (prompts, targets) in enumerate(tqdm(batches, desc="timing", file=sys.stderr)):
        for name in list(ways) if index % 2 else list(ways)[::-1]:  # alternate who goes first
            model.zero_grad(set_to_none=True)
            start = time.perf_counter()
            ways[name](prompts, targets)
            times[name].append(time.perf_counter() - start)
    lengths = [[len(p) for p in prompts] for prompts, _ in batches]
    shares = {
        "one padded batch": statistics.mean(real_share(L, [list(range(len(L)))]) for L in lengths),
        "length-grouped micro-batches": statistics.mean(real_share(L, length_groups(L)) for L in lengths),
    }
    medians = {name: statistics.median(t) for name, t in times.items()}
    print(f"{args.steps} batches of {cfg.batch_size} from {cfg.data}, {torch.get_num_threads()} CPU threads")
    for name in ways:
        print(f"{name:30s} real tokens {shares[name]:6.1%}   median step {medians[name] * 1000:7.0f} ms")
    speedup = medians["one padded batch"] / medians["length-grouped micro-batches"]
    print(f"speed-up of micro-batches: {speedup:.2f}x")
    if args.json:
        print(json.dumps({"median_s": medians, "real_share": shares, "speedup": speedup}))
    return 0


if __name__ == "__main__":
    sys.exit(main())

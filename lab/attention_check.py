"""Does the decoder look at the shape it is asked about? Every head's attention, on held-out quizzes.

    python -m lab.attention_check --model runs/builtin/model --data data/builtin [--scenes 150]
    python -m lab.attention_check ... --values 2,0     # what layer 2's head 0 brings back

Draws fresh quizzes (lab.data.quiz, seed 0) about the first held-out scenes of `data` and, at
every position that predicts a token of an answer about particular shapes, reads each head's
attention (lab.grounding): the share of it on the image tokens of the shapes asked about, and
how often the image token it attends to most is one of them. With the scene probe's check
(lab.probe_check) this says where an answer is lost: in the image tokens, in the look-up, or
after it. `--values LAYER,HEAD` also fits linear probes (on 70% of the answer positions about
one shape, scored on the rest) for that shape's kind and colour from three places: its image
token as the decoder gets it, what the head brings back to the answer position, and the final
hidden state there.
"""

from __future__ import annotations

import argparse
import random
import sys
from pathlib import Path

import torch

from engine.loading import load_checkpoint
from engine.prompt import build_prompt, collate
from engine.types import CheckpointError, EngineError
from lab.data.quiz import draw_quiz, is_quizzable
from lab.grounding import AttentionGrounding, grounding_queries, image_positions
from lab.observe_cache import OBSERVATION_CACHE, load_observations
from lab.scene_probe import scene_target


def attention_on_asked_shapes(
    model_dir: Path, data: Path, scenes: int = 150, batch_size: int = 25
) -> tuple[int, dict[tuple[int, int], tuple[float, float]]]:
    """How many answer positions were read, and per (layer, head): (mean attention mass on the asked
    shapes' image tokens, share of positions whose most-attended image token is one of them)."""
    model, tokenizer = load_checkpoint(model_dir, device="cpu", dtype=torch.float32)
    model.eval()
    config = model.config
    AttentionGrounding(config)  # says clearly when this model has no such look-up to check
    items = _quizzes(model, tokenizer, data, scenes)
    heads = [
        AttentionGrounding(config, layer, head) for layer in range(config.n_layers) for head in range(config.n_heads)
    ]
    mass = {(g.layer, g.head): 0.0 for g in heads}
    hits = dict(mass)
    positions = 0
    for start in range(0, len(items), batch_size):
        chunk = items[start : start + batch_size]
        inputs = collate([prompt for prompt, _, _ in chunk])
        images = [torch.tensor(image_positions(prompt, config.image_tokens)) for prompt, _, _ in chunk]
        with torch.no_grad():
            for grounding in heads:  # one hook per head: a forward pass each, on the CPU in seconds
                with grounding.watch(model):
                    model(inputs)
                for row, ((_, queries, _), image) in enumerate(zip(chunk, images)):
                    weights = grounding.weights(torch.full((len(queries),), row), torch.tensor([t for t, _ in queries]))
                    top = image[weights[:, image].argmax(-1)]  # (N,) the most-attended image token
                    for n, (_, keys) in enumerate(queries):
                        mass[grounding.layer, grounding.head] += float(weights[n, list(keys)].sum())
                        hits[grounding.layer, grounding.head] += float(int(top[n]) in keys)
        positions += sum(len(queries) for _, queries, _ in chunk)
    if not positions:
        raise EngineError(f"No held-out quiz of {data} asks about a particular shape.")
    return positions, {key: (mass[key] / positions, hits[key] / positions) for key in mass}


def _quizzes(model, tokenizer, data: Path, scenes: int) -> list:
    """[(prompt, queries, scene target)] for fresh quizzes about the first held-out scenes."""
    from lab.data import load_dataset

    examples = [e for e in load_dataset(data, "heldout") if is_quizzable(e)][:scenes]
    if not examples:
        raise EngineError(f"{data} has no held-out scenes.")
    load_observations(examples, model.config.observations, data / OBSERVATION_CACHE)
    rng = random.Random(0)
    items = []
    for example in examples:
        drawn = draw_quiz(example, rng, 4)
        prompt = build_prompt(drawn.conversation, tokenizer, model.config, add_generation_prompt=False)
        if queries := grounding_queries(prompt, drawn.answer_cells, model.config.image_tokens):
            items.append((prompt, queries, scene_target(example.meta["scene"])))
    return items


def _probe_accuracy(features: torch.Tensor, labels: torch.Tensor, steps: int = 300) -> float:
    """Held-out accuracy of a linear softmax probe fitted on the first 70% of rows."""
    cut = int(len(labels) * 0.7)
    if cut == 0 or cut == len(labels):
        raise EngineError("Too few answer positions to fit a probe; quiz more scenes (--scenes).")
    x = (features - features[:cut].mean(0)) / (features[:cut].std(0) + 1e-6)
    torch.manual_seed(0)
    probe = torch.nn.Linear(x.shape[1], int(labels.max()) + 1)
    optimizer = torch.optim.Adam(probe.parameters(), lr=0.05, weight_decay=1e-3)
    for _ in range(steps):
        optimizer.zero_grad()
        torch.nn.functional.cross_entropy(probe(x[:cut]), labels[:cut]).backward()
        optimizer.step()
    with torch.no_grad():
        return float((probe(x[cut:]).argmax(-1) == labels[cut:]).float().mean())


def what_the_look_up_brings(
    model_dir: Path, data: Path, layer: int, head: int, scenes: int = 700, batch_size: int = 25
) -> tuple[int, dict[str, tuple[float, float]]]:
    """Answer positions about one shape, and per place ("image token", "head output", "final
    hidden"): the linear probes' held-out accuracy for the asked shape's (kind, colour)."""
    model, tokenizer = load_checkpoint(model_dir, device="cpu", dtype=torch.float32)
    model.eval()
    grounding = AttentionGrounding(model.config, layer, head)
    items = [
        (p, [(t, k) for t, k in q if len(k) == 1], target) for p, q, target in _quizzes(model, tokenizer, data, scenes)
    ]
    attention = model.decoder.blocks[grounding.layer].attention
    D = model.config.head_dim
    places: dict[str, list[torch.Tensor]] = {"image token": [], "head output": [], "final hidden": []}
    labels = []
    for start in range(0, len(items), batch_size):
        chunk = items[start : start + batch_size]
        mixed, fused = [], []
        hooks = [
            attention.out.register_forward_pre_hook(lambda module, args, mixed=mixed: mixed.append(args[0])),
            model.fusion.register_forward_hook(lambda module, args, out, fused=fused: fused.append(out)),
        ]
        try:
            with torch.no_grad():
                hidden = model(collate([prompt for prompt, _, _ in chunk]))  # (B, T, C)
        finally:
            for hook in hooks:
                hook.remove()
        for row, (prompt, queries, target) in enumerate(chunk):
            image = image_positions(prompt, model.config.image_tokens)
            for position, (key,) in queries:
                places["image token"].append(fused[0][row, key])
                places["head output"].append(mixed[0][row, position, head * D : (head + 1) * D])  # (C,) -> (D,)
                places["final hidden"].append(hidden[row, position])
                labels.append(target[image.index(key)])
    if not labels:
        raise EngineError(f"No held-out quiz of {data} asks about one particular shape.")
    y = torch.stack(labels)  # (N, 2): kind, colour
    return len(y), {
        name: (_probe_accuracy(torch.stack(rows), y[:, 0]), _probe_accuracy(torch.stack(rows), y[:, 1]))
        for name, rows in places.items()
    }


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m lab.attention_check", description=__doc__.split("\n")[0])
    parser.add_argument("--model", default="assets/models/builtin", help="checkpoint directory")
    parser.add_argument("--data", default="data/builtin", help="dataset folder from `python -m lab.data`")
    parser.add_argument("--scenes", type=int, default=150, help="held-out scenes to quiz")
    parser.add_argument("--values", metavar="LAYER,HEAD", help="also probe what this head brings back")
    args = parser.parse_args(argv)
    try:
        look_up = tuple(int(n) for n in args.values.split(",")) if args.values else None
        if look_up is not None and len(look_up) != 2:
            raise ValueError
    except ValueError:
        parser.error(f"--values takes LAYER,HEAD such as 2,0, not {args.values!r}")
    try:
        positions, heads = attention_on_asked_shapes(Path(args.model), Path(args.data), args.scenes)
        values = (
            what_the_look_up_brings(Path(args.model), Path(args.data), *look_up, scenes=max(args.scenes, 700))
            if look_up
            else None
        )
    except (EngineError, CheckpointError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    print(f"{positions} answer positions of held-out quizzes about {args.data}, model {args.model}:")
    print("| layer | head | attention on the asked shapes | top image token is one of them |")
    print("|---|---|---|---|")
    for (layer, head), (mass, hit) in heads.items():
        print(f"| {layer} | {head} | {100 * mass:.1f}% | {100 * hit:.1f}% |")
    if values:
        count, places = values
        print(
            f"\nWhat layer {look_up[0]}, head {look_up[1]} brings back ({count} answer positions about one shape; "
            "linear probes fitted on 70%, scored on the rest):"
        )
        print("| read from | kind of the asked shape | its colour |")
        print("|---|---|---|")
        for name, (kind, colour) in places.items():
            print(f"| {name} | {100 * kind:.1f}% | {100 * colour:.1f}% |")
    return 0


if __name__ == "__main__":
    sys.exit(main())

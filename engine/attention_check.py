"""Does the decoder look at the shape it is asked about? Every head's attention, on held-out quizzes.

    python -m engine.attention_check --model runs/builtin/model --data data/builtin [--scenes 150]

Draws fresh quizzes (engine.data.quiz, seed 0) about the first held-out scenes of `data` and, at
every position that predicts a token of an answer about particular shapes, reads each head's
attention (engine.grounding): the share of it on the image tokens of the shapes asked about, and
how often the image token it attends to most is one of them. With the scene probe's check
(engine.probe_check) this says where an answer is lost: in the image tokens, in the look-up, or
after it.
"""

from __future__ import annotations

import argparse
import random
import sys
from pathlib import Path

import torch

from engine.data.quiz import draw_quiz, is_quizzable
from engine.fusion import IMAGE
from engine.grounding import AttentionGrounding, grounding_queries
from engine.loading import load_checkpoint
from engine.observe_cache import load_observations
from engine.prompt import build_prompt, collate
from engine.types import CheckpointError, EngineError


def attention_on_asked_shapes(model_dir: Path, data: Path, scenes: int = 150,
                              batch_size: int = 25) -> tuple[int, dict[tuple[int, int], tuple[float, float]]]:
    """How many answer positions were read, and per (layer, head): (mean attention mass on the asked
    shapes' image tokens, share of positions whose most-attended image token is one of them)."""
    from engine.data import load_dataset
    from engine.train import OBSERVATION_CACHE

    model, tokenizer = load_checkpoint(model_dir, device="cpu", dtype=torch.float32)
    model.eval()
    config = model.config
    AttentionGrounding(config)  # says clearly when this model has no such look-up to check
    examples = [e for e in load_dataset(data, "heldout") if is_quizzable(e)][:scenes]
    if not examples:
        raise EngineError(f"{data} has no held-out scenes.")
    load_observations(examples, config.observations, data / OBSERVATION_CACHE)
    rng = random.Random(0)
    items = []
    for example in examples:
        drawn = draw_quiz(example, rng, 4)
        prompt = build_prompt(drawn.conversation, tokenizer, config, add_generation_prompt=False)
        if queries := grounding_queries(prompt, drawn.answer_cells, config.image_tokens):
            items.append((prompt, queries))
    heads = [AttentionGrounding(config, layer, head) for layer in range(config.n_layers) for head in range(config.n_heads)]
    mass = {(g.layer, g.head): 0.0 for g in heads}
    hits = dict(mass)
    positions = 0
    for start in range(0, len(items), batch_size):
        chunk = items[start:start + batch_size]
        inputs = collate([prompt for prompt, _ in chunk])
        with torch.no_grad():
            for grounding in heads:  # one hook per head: a forward pass each, on the CPU in seconds
                with grounding.watch(model):
                    model(inputs)
                for row, (prompt, queries) in enumerate(chunk):
                    image = torch.tensor([i for i, kind in enumerate(prompt.media_kind) if kind == IMAGE][:config.image_tokens])
                    weights = grounding.weights(torch.full((len(queries),), row), torch.tensor([t for t, _ in queries]))
                    top = image[weights[:, image].argmax(-1)]  # (N,) the most-attended image token
                    for n, (_, keys) in enumerate(queries):
                        mass[grounding.layer, grounding.head] += float(weights[n, list(keys)].sum())
                        hits[grounding.layer, grounding.head] += float(int(top[n]) in keys)
        positions += sum(len(queries) for _, queries in chunk)
    if not positions:
        raise EngineError(f"No held-out quiz of {data} asks about a particular shape.")
    return positions, {key: (mass[key] / positions, hits[key] / positions) for key in mass}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m engine.attention_check", description=__doc__.split("\n")[0])
    parser.add_argument("--model", default="assets/models/builtin", help="checkpoint directory")
    parser.add_argument("--data", default="data/builtin", help="dataset folder from `python -m engine.data`")
    parser.add_argument("--scenes", type=int, default=150, help="held-out scenes to quiz")
    args = parser.parse_args(argv)
    try:
        positions, heads = attention_on_asked_shapes(Path(args.model), Path(args.data), args.scenes)
    except (EngineError, CheckpointError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    print(f"{positions} answer positions of held-out quizzes about {args.data}, model {args.model}:")
    print("| layer | head | attention on the asked shapes | top image token is one of them |")
    print("|---|---|---|---|")
    for (layer, head), (mass, hit) in heads.items():
        print(f"| {layer} | {head} | {100 * mass:.1f}% | {100 * hit:.1f}% |")
    return 0


if __name__ == "__main__":
    sys.exit(main())

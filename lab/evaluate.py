"""Evaluate a checkpoint on held-out data: `python -m lab.evaluate --model DIR --data DIR [--json]`.

Reports perplexity on the assistant tokens, exact-match accuracy per question type (color,
shape, count, position, word, sound kind …), and BLEU-4 / ROUGE-L on held-out chit-chat;
writes `evaluation.md`, `evaluation.json` and `evaluation.png` into --out (default: beside
the model). `--ablation` trains short runs of every fusion × decoder pair on the same data
and budget (`--steps`) and writes the comparison table (`ablation.md`, `ablation.png`).
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from collections import defaultdict
from pathlib import Path

import torch
from tqdm import tqdm

from engine.backends.builtin import BuiltinBackend
from engine.types import CheckpointError, Conversation, EngineError, GenerationConfig
from lab.data.questions import named_by
from lab.metrics import corpus_bleu, exact_match, rouge_l

GREEDY = GenerationConfig(max_new_tokens=48, temperature=0.0)
CHITCHAT = "chitchat"
BY_REFERENCE = ("color", "shape", "count")  # question types also broken down by how they name the shape


def _without_answer(conversation: Conversation) -> Conversation:
    """The conversation up to (not including) its last assistant turn."""
    turns = list(conversation.turns)
    while turns and turns[-1].role == "assistant":
        turns.pop()
    return Conversation(conversation.system_prompt, turns)


def check_compatible(model_dir: Path, run_dir: Path | None) -> None:
    """Refuse a checkpoint whose config differs from the run it is said to come from."""
    if run_dir is None or not (run_dir / "model" / "config.json").is_file():
        return
    ours = json.loads((model_dir / "config.json").read_text())
    theirs = json.loads((run_dir / "model" / "config.json").read_text())
    differ = sorted(k for k in set(ours) | set(theirs) if ours.get(k) != theirs.get(k))
    if differ:
        raise CheckpointError(
            f"{model_dir} was trained with another config than the run {run_dir}: "
            f"{', '.join(f'{k} {ours.get(k)!r} vs {theirs.get(k)!r}' for k in differ)}."
        )


def names_every_shape(reply: str, scene: dict) -> bool:
    """Does a description name each shape of the scene with its colour ("red circle")?"""
    return all(f"{shape['color']} {shape['kind']}" in reply.lower() for shape in scene["shapes"])


def says_something_true(reply: str, seen) -> bool:
    """Does a reply about a photo pass on something the tools saw: a colour, its text, a face?"""
    words = set(reply.lower().replace(".", " ").replace(",", " ").split())
    return bool(
        words & set(seen.colors)
        or any(line.lower() in reply.lower() for line in seen.text)
        or (seen.faces and "face" in words)
    )


def grounding_checks(example, reply: str) -> dict[str, bool]:
    """The issue's bars on descriptions, for one example: name -> passed (empty when none applies)."""
    scene = example.meta.get("scene")
    if example.qtype == "describe" and scene and scene["background"] == "plain" and 1 <= len(scene["shapes"]) <= 3:
        return {"describe names every shape (plain scene, 1-3 shapes)": names_every_shape(reply, scene)}
    if example.source == "photo" and example.qtype == "photo":
        from engine import preprocess
        from engine.observe import observe_image

        seen = observe_image(preprocess.read_image(example.conversation.turns[0].images[0]))
        return {"says something true about a photo it never saw": says_something_true(reply, seen)}
    return {}


def evaluate(
    backend: BuiltinBackend, examples: list, batch_size: int = 16, observation_cache: Path | None = None
) -> dict:
    """All metrics for one model on a list of dataset examples."""
    from lab.batches import encode_examples
    from lab.losses import evaluate_loss

    prompts = encode_examples(examples, backend.tokenizer, backend.config, "encoding", observation_cache)
    loss = evaluate_loss(backend.model, prompts, batch_size, backend.device)
    by_type: dict[str, list[tuple[str, str]]] = defaultdict(list)
    checks: dict[str, list[bool]] = defaultdict(list)
    by_reference: dict[str, dict[str, list[int]]] = defaultdict(lambda: defaultdict(lambda: [0, 0]))
    for start in tqdm(range(0, len(examples), batch_size), desc="answering", file=sys.stderr, leave=False):
        batch = examples[start : start + batch_size]
        asked = [_without_answer(e.conversation) for e in batch]
        replies = backend.generate_batch(asked, GREEDY)
        for example, conversation, reply in zip(batch, asked, replies):
            by_type[example.qtype].append((reply, example.answer))
            if example.qtype in BY_REFERENCE:
                tally = by_reference[example.qtype][named_by(conversation.turns[-1].text)]
                tally[0], tally[1] = tally[0] + exact_match(reply, example.answer), tally[1] + 1
            for name, passed in grounding_checks(example, reply).items():
                checks[name].append(passed)
    results = {
        "examples": len(examples),
        "loss": round(loss, 4),
        "perplexity": round(math.exp(loss), 3),
        "accuracy": {},
        "samples": {},
        "checks": {name: {"passed": sum(v), "of": len(v)} for name, v in sorted(checks.items())},
        "by_reference": {
            qtype: {named: {"right": right, "of": of} for named, (right, of) in sorted(tallies.items())}
            for qtype, tallies in sorted(by_reference.items())
        },
    }
    for qtype, pairs in sorted(by_type.items()):
        if qtype == CHITCHAT:
            predictions, references = zip(*pairs)
            results["bleu"] = round(corpus_bleu(list(predictions), list(references)), 2)
            results["rouge_l"] = round(rouge_l(list(predictions), list(references)), 2)
        else:
            results["accuracy"][qtype] = round(sum(exact_match(p, r) for p, r in pairs) / len(pairs), 4)
        results["samples"][qtype] = [{"reply": p, "answer": r} for p, r in pairs[:3]]
    return results


def to_markdown(results: dict, title: str) -> str:
    lines = [
        f"## {title}",
        "",
        f"Held-out examples: {results['examples']}; perplexity {results['perplexity']} (loss {results['loss']}).",
        "",
        "| question type | exact match |",
        "|---|---|",
    ]
    lines += [f"| {qtype} | {accuracy:.1%} |" for qtype, accuracy in results["accuracy"].items()]
    if results.get("by_reference"):
        lines += ["", "| question type | the shape named by | right | of |", "|---|---|---|---|"]
        lines += [
            f"| {qtype} | {named} | {tally['right']} | {tally['of']} |"
            for qtype, tallies in results["by_reference"].items()
            for named, tally in tallies.items()
        ]
    if "bleu" in results:
        lines += ["", f"Chit-chat: BLEU-4 {results['bleu']}, ROUGE-L {results['rouge_l']}."]
    for name, check in results.get("checks", {}).items():
        lines += ["", f"{name[0].upper() + name[1:]}: {check['passed']} of {check['of']}."]
    return "\n".join(lines) + "\n"


def plot_accuracy(rows: dict[str, dict], path: Path) -> None:
    """Grouped bars: accuracy per question type, one colour per model."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    qtypes = sorted({q for r in rows.values() for q in r["accuracy"]})
    fig, ax = plt.subplots(figsize=(max(6, len(qtypes) * 1.3), 4))
    width = 0.8 / max(len(rows), 1)
    for i, (name, result) in enumerate(rows.items()):
        ax.bar(
            [x + i * width for x in range(len(qtypes))],
            [result["accuracy"].get(q, 0) for q in qtypes],
            width,
            label=name,
        )
    ax.set_xticks([x + width * (len(rows) - 1) / 2 for x in range(len(qtypes))], qtypes)
    ax.set_ylim(0, 1)
    ax.set_ylabel("exact match")
    ax.legend(fontsize=8)
    ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def ablation(data: str, out: Path, steps: int, limit: int, device: str) -> dict:
    """Short runs of every fusion × decoder pair, same data, steps and seed."""
    from lab.data import load_dataset
    from lab.observe_cache import OBSERVATION_CACHE
    from lab.train import TrainConfig, train

    examples = load_dataset(data, "heldout")[:limit]
    rows = {}
    for decoder in ("transformer", "lstm"):
        for fusion in ("concat", "sum", "gated"):
            name = f"{fusion} + {decoder}"
            cfg = TrainConfig(
                data=data,
                out=str(out / f"{fusion}-{decoder}"),
                steps=steps,
                device=device,
                eval_every=steps,
                checkpoint_every=steps,
                model_overrides={"decoder": decoder, "fusion": fusion},
            )
            model_dir = train(cfg)
            rows[name] = evaluate(
                BuiltinBackend.from_directory(model_dir, device=device),
                examples,
                observation_cache=Path(data) / OBSERVATION_CACHE,
            )
    qtypes = sorted({q for r in rows.values() for q in r["accuracy"]})
    lines = [
        f"Ablation: {steps} training steps each, same data and seed; {len(examples)} held-out examples.",
        "",
        "| fusion + decoder | perplexity | " + " | ".join(qtypes) + " | BLEU | ROUGE-L |",
        "|---" * (len(qtypes) + 4) + "|",
    ]
    for name, r in rows.items():
        cells = [f"{r['accuracy'].get(q, 0):.1%}" for q in qtypes]
        lines.append(
            f"| {name} | {r['perplexity']} | "
            + " | ".join(cells)
            + f" | {r.get('bleu', '–')} | {r.get('rouge_l', '–')} |"
        )
    (out / "ablation.md").write_text("\n".join(lines) + "\n")
    (out / "ablation.json").write_text(json.dumps(rows, indent=2))
    plot_accuracy(rows, out / "ablation.png")
    print("\n".join(lines))
    return rows


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m lab.evaluate", description=__doc__.split("\n")[0])
    parser.add_argument("--model", help="checkpoint directory (default: the built-in model)")
    parser.add_argument("--data", default="data/builtin", help="dataset directory from `python -m lab.data`")
    parser.add_argument("--run", help="training run directory the model should come from (checked)")
    parser.add_argument("--out", help="where to write the reports (default: the model directory's parent)")
    parser.add_argument("--limit", type=int, default=0, help="evaluate on the first N held-out examples")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--json", action="store_true", help="print the results as one JSON line last")
    parser.add_argument("--ablation", action="store_true", help="train and compare fusion × decoder")
    parser.add_argument("--steps", type=int, default=300, help="training steps per ablation run")
    args = parser.parse_args(argv)
    try:
        from engine.backends import DEFAULT_MODEL
        from lab.data import load_dataset
        from lab.observe_cache import OBSERVATION_CACHE

        if args.ablation:
            out = Path(args.out or "runs/ablation")
            out.mkdir(parents=True, exist_ok=True)
            rows = ablation(args.data, out, args.steps, args.limit or 400, args.device)
            if args.json:
                print(json.dumps(rows))
            return 0
        model_dir = Path(args.model) if args.model else DEFAULT_MODEL
        check_compatible(model_dir, Path(args.run) if args.run else None)
        backend = BuiltinBackend.from_directory(model_dir, device=args.device)
        examples = load_dataset(args.data, "heldout")
        examples = examples[: args.limit] if args.limit else examples
        with torch.inference_mode():
            results = evaluate(backend, examples, observation_cache=Path(args.data) / OBSERVATION_CACHE)
    except (EngineError, FileNotFoundError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    out = Path(args.out) if args.out else model_dir.parent
    out.mkdir(parents=True, exist_ok=True)
    markdown = to_markdown(results, f"Evaluation of {model_dir}")
    (out / "evaluation.md").write_text(markdown)
    (out / "evaluation.json").write_text(json.dumps(results, indent=2))
    plot_accuracy({backend.name: results}, out / "evaluation.png")
    print(markdown)
    if args.json:
        print(json.dumps({k: v for k, v in results.items() if k != "samples"}))
    return 0


if __name__ == "__main__":
    sys.exit(main())

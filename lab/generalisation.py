"""Does a model see shapes beyond its training generator? (issue 19)

    python -m lab.generalisation --model DIR_OR_SPEC [--n 200] [--sets train,second-plain] [--json]

Asks, about each of `--n` scenes per set, one colour, one shape and one count question
(`make_question`, phrased as in training) and "What do you see?", through any backend
`engine.backends.load_backend` takes (the built-in model, a transformers model, a server).

Sets (seeds no dataset uses):
- train: the training generator as the shipped model was trained on it (lab.data.scenes);
- train-varied: the training generator with variety=True (lab.data.variety);
- second-plain: the second renderer's plain setting, the bar's (white, 4:3, 1-3 shapes);
- second-hard: the second renderer's hard setting (any background, 1-5 shapes, degraded).

Scoring: a colour (shape) answer is right when it names the asked colour (kind), or an accepted
synonym, and no other; a count answer when the one number it says is the count; a
description when every shape is named with its colour ("red circle", "red filled circle",
"two red circles"). Bars (issue 19, second-plain): each of colour, shape, count and
description at least 90%.

Baseline, the shipped built-in model (`python -m lab.generalisation --model assets/models/builtin
--n 200 --device cpu`, seed 0, 2.5 min on 2 CPU cores), colour / shape / count / description:
train 100.0 / 99.0 / 94.0 / 99.0%; train-varied 44.5 / 39.5 / 49.0 / 11.0%;
second-plain 34.5 / 36.0 / 51.0 / 11.5%; second-hard 21.0 / 15.0 / 36.0 / 3.5%.
"""

from __future__ import annotations

import argparse
import io
import json
import random
import re
import sys
import time
from pathlib import Path

from engine.types import Conversation, EngineError, GenerationConfig, Turn
from lab.data.questions import NUMBERS, make_question
from lab.data.scenes import Scene, random_scene
from lab.data.second_renderer import second_scene
from lab.data.variety import encode_scene
from lab.metrics import words

SETS = ("train", "train-varied", "second-plain", "second-hard")
QUESTIONS = ("color", "shape", "count", "describe")
BAR = 0.9  # on second-plain, every question type
GREEDY = GenerationConfig(max_new_tokens=64, temperature=0.0)
COLOUR_WORDS = {
    "red": ("red", "crimson", "scarlet"),
    "orange": ("orange",),
    "yellow": ("yellow", "gold", "golden"),
    "green": ("green", "lime"),
    "blue": ("blue", "navy"),
    "purple": ("purple", "violet", "lilac"),
    "pink": ("pink", "magenta"),
    "brown": ("brown",),
    "black": ("black",),
    "white": ("white",),
    "gray": ("gray", "grey"),  # never a shape's colour: a wrong answer
    "cyan": ("cyan", "turquoise", "teal"),
}
KIND_WORDS = {
    "circle": ("circle", "disc", "disk", "dot", "oval", "ring"),
    "square": ("square", "rectangle", "box"),
    "triangle": ("triangle",),
    "star": ("star",),
    "diamond": ("diamond", "rhombus", "lozenge"),
    "cross": ("cross", "plus"),
}
NUMBER_WORDS = {**{w: i for i, w in enumerate(NUMBERS)}, "zero": 0, "none": 0, "single": 1}


def _plural(word: str) -> tuple[str, ...]:
    return (word, word + "s", word + "es")


def _mentioned(reply: str, vocabulary: dict[str, tuple[str, ...]]) -> set[str]:
    said = set(words(reply))
    return {name for name, synonyms in vocabulary.items() if said & {p for s in synonyms for p in _plural(s)}}


def colour_right(reply: str, colour: str) -> bool:
    return _mentioned(reply, COLOUR_WORDS) == {colour}


def shape_right(reply: str, kind: str) -> bool:
    return _mentioned(reply, KIND_WORDS) == {kind}


def numbers_in(text: str) -> set[int]:
    return {NUMBER_WORDS[w] if w in NUMBER_WORDS else int(w) for w in words(text) if w in NUMBER_WORDS or w.isdigit()}


def count_right(reply: str, count: int) -> bool:
    return numbers_in(reply) == {count}


def names_every_shape(reply: str, scene: Scene) -> bool:
    """Is each shape named with its colour: its colour word, at most two words, then its kind?"""
    text = " ".join(words(reply))
    for shape in scene.shapes:
        colours = "|".join(COLOUR_WORDS[shape.color])
        kinds = "|".join(p for s in KIND_WORDS[shape.kind] for p in _plural(s))
        if not re.search(rf"\b(?:{colours})(?: [a-z']+){{0,2}}? (?:{kinds})\b", text):
            return False
    return True


def expected(qa) -> str | int:
    """The fact a colour / shape / count answer states ("It is red." -> "red", "There are two shapes." -> 2)."""
    answer = qa.answer
    if qa.qtype == "count":
        return min(numbers_in(answer.split(" shape")[0]))
    return words(answer)[-1]


def right(qtype: str, reply: str, qa, scene: Scene) -> bool:
    if qtype == "describe":
        return names_every_shape(reply, scene)
    if qtype == "color":
        return colour_right(reply, expected(qa))
    if qtype == "shape":
        return shape_right(reply, expected(qa))
    return count_right(reply, expected(qa))


# ----------------------------------------------------------------------------- scenes and questions


def _png(image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def scene_set(name: str, n: int, seed: int = 0) -> list[tuple[Scene, bytes]]:
    """n (description, picture file bytes) of one set; the same for the same seed."""
    items = []
    for i in range(n):
        rng = random.Random(f"generalisation/{seed}/{name}/{i}")
        if name == "train":
            scene = random_scene(rng)
            items.append((scene, encode_scene(scene, 128)[0]))
        elif name == "train-varied":
            scene = random_scene(rng, variety=True)
            items.append((scene, encode_scene(scene)[0]))
        elif name in ("second-plain", "second-hard"):
            scene, image = second_scene(rng, name.removeprefix("second-"))
            items.append((scene, _png(image)))
        else:
            raise ValueError(f"Unknown set {name!r}; the sets are {', '.join(SETS)}")
    return items


def questions(scene: Scene, rng: random.Random) -> list[tuple[str, str, object]]:
    """(qtype, question, qa) for the scene: colour, shape, count, and "What do you see?"."""
    asked = []
    for qtype in QUESTIONS[:3]:
        qa = make_question(scene, rng, qtype)
        if qa.qtype == qtype:  # a shape that cannot be named falls back to a description
            asked.append((qtype, qa.turns[0][0], qa))
    asked.append(("describe", "What do you see?", None))
    return asked


def _replies(backend, conversations: list[Conversation], batch_size: int) -> list[str]:
    if hasattr(backend, "generate_batch"):
        out = []
        for start in range(0, len(conversations), batch_size):
            out += backend.generate_batch(conversations[start : start + batch_size], GREEDY)
        return out
    return ["".join(backend.stream(c, GREEDY)) for c in conversations]


def evaluate_set(backend, name: str, n: int, seed: int = 0, batch_size: int = 16) -> dict:
    """Accuracy per question type on one set, with a few wrong replies to read."""
    items = scene_set(name, n, seed)
    asked = []  # (scene, qtype, question, qa, picture)
    for i, (scene, picture) in enumerate(items):
        for qtype, question, qa in questions(scene, random.Random(f"generalisation/{seed}/{name}/{i}/q")):
            asked.append((scene, qtype, question, qa, picture))
    conversations = [Conversation("", [Turn("user", q, images=[p], created=0.0)]) for _, _, q, _, p in asked]
    replies = _replies(backend, conversations, batch_size)
    tally = {q: [0, 0] for q in QUESTIONS}
    wrong: dict[str, list[dict]] = {q: [] for q in QUESTIONS}
    for (scene, qtype, question, qa, _), reply in zip(asked, replies):
        ok = right(qtype, reply, qa, scene)
        tally[qtype][0] += ok
        tally[qtype][1] += 1
        if not ok and len(wrong[qtype]) < 3:
            truth = qa.answer if qa else "; ".join(f"{s.color} {s.kind}" for s in scene.shapes)
            wrong[qtype].append({"question": question, "reply": reply, "truth": truth})
    return {
        "scenes": len(items),
        "accuracy": {q: round(r / of, 4) if of else None for q, (r, of) in tally.items()},
        "asked": {q: of for q, (_, of) in tally.items()},
        "wrong": wrong,
    }


def evaluate(backend, sets=SETS, n: int = 200, seed: int = 0) -> dict:
    results = {"model": getattr(backend, "name", "?"), "n": n, "seed": seed, "sets": {}}
    for name in sets:
        started = time.monotonic()
        results["sets"][name] = evaluate_set(backend, name, n, seed)
        results["sets"][name]["seconds"] = round(time.monotonic() - started, 1)
    plain = results["sets"].get("second-plain")
    if plain:
        results["bar_met"] = all((plain["accuracy"][q] or 0) >= BAR for q in QUESTIONS)
    return results


def to_markdown(results: dict) -> str:
    lines = [
        f"## Generalisation of {results['model']} ({results['n']} scenes per set, seed {results['seed']})",
        "",
        "| set | colour | shape | count | What do you see? (every shape with its colour) |",
        "|---|---|---|---|---|",
    ]
    for name, r in results["sets"].items():
        cells = [
            f"{r['accuracy'][q]:.1%} ({r['asked'][q]})" if r["accuracy"][q] is not None else "–" for q in QUESTIONS
        ]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    if "bar_met" in results:
        lines += ["", f"Bar (second-plain, each >= {BAR:.0%}): {'met' if results['bar_met'] else 'not met'}."]
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m lab.generalisation", description=__doc__.split("\n")[0])
    parser.add_argument(
        "--model", default="", help="a backend spec for engine.backends.load_backend (default: built-in)"
    )
    parser.add_argument("--n", type=int, default=200, help="scenes per set (default: %(default)s)")
    parser.add_argument("--sets", default=",".join(SETS), help="comma-separated, from: " + ", ".join(SETS))
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--out", type=Path, help="also write generalisation.md and generalisation.json here")
    parser.add_argument("--json", action="store_true", help="print the results as one JSON line last")
    args = parser.parse_args(argv)
    sets = [s.strip() for s in args.sets.split(",") if s.strip()]
    if unknown := [s for s in sets if s not in SETS]:
        parser.error(f"unknown set(s) {', '.join(unknown)}; the sets are {', '.join(SETS)}")
    try:
        from engine.backends import load_backend

        backend = load_backend(args.model or None, device=args.device, asr=False)
        results = evaluate(backend, sets, args.n, args.seed)
    except EngineError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    markdown = to_markdown(results)
    print(markdown)
    if args.out:
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / "generalisation.md").write_text(markdown)
        (args.out / "generalisation.json").write_text(json.dumps(results, indent=2) + "\n")
    if args.json:
        print(json.dumps(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Questions and answers about a generated scene, tagged by question type (`qtype`).

    for qa in scene_questions(scene, random.Random(...), count=2):
        qa.qtype, qa.turns      # "color", [("What color is the star?", "It is red.")]
        qa.cells                # ((4,),): per turn, the grid cells (row * 3 + col) its answer is about

Questions come in several phrasings; answers have one fixed form per fact, so exact-match
evaluation works ("It is red.", "There are three shapes.", "It is on the left."). A
description names every object with its colour, left to right then top to bottom:
"A red circle on the left, a blue square in the center and the word CAT."
A `followup` conversation asks about one object, then "And what color is it?".
"""

from __future__ import annotations

import random
import re
from collections import Counter
from dataclasses import dataclass

from lab.data.scenes import COLUMNS, ROWS, SHAPE_COLORS, SHAPES, Scene, Shape

QTYPES = ("color", "shape", "count", "position", "size", "exists", "word", "describe", "followup")
# How often each type is drawn for a scene (word questions mostly go to scenes that have a word).
WEIGHTS = {
    "color": 3,
    "shape": 3,
    "count": 3,
    "position": 2,
    "size": 1,
    "exists": 1,
    "word": 3,
    "describe": 3,
    "followup": 2,
}
NUMBERS = ("no", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")
SIZE_WORDS = {"small": "small", "medium": "medium-sized", "large": "large"}


@dataclass(frozen=True)
class QA:
    """One conversation about one picture: (question, answer) pairs, the last one is evaluated."""

    qtype: str
    turns: tuple[tuple[str, str], ...]
    # per turn, the 3x3 grid cells (row * 3 + col) of the shapes its answer is about; () where the
    # answer is about no particular shape (descriptions, words) or there is none ("no stars")
    cells: tuple[tuple[int, ...], ...] = ()

    @property
    def answer(self) -> str:
        return self.turns[-1][1]


# ----------------------------------------------------------------------------- phrases


def article(word: str) -> str:
    return ("an " if word[0] in "aeiou" else "a ") + word


def plural(kind: str) -> str:
    return kind + ("es" if kind.endswith(("s", "x")) else "s")


def named_by(question: str) -> str:
    """How a colour, shape or count question names what it asks about: "colour and kind" ("the
    red star"), "colour" ("the red shape", "How many red shapes…"), "kind" ("the star", "How many
    stars…"), "place" ("the shape on the left") or "none" ("How many shapes are there?")."""
    words = set(re.findall(r"[a-z]+", question.lower()))
    colour = bool(words & set(SHAPE_COLORS))
    kind = any(k in words or plural(k) in words for k in SHAPES)
    if colour and kind:
        return "colour and kind"
    if colour or kind:
        return "colour" if colour else "kind"
    return "place" if words & {*ROWS, *COLUMNS} else "none"


def where(position: str) -> str:
    """'left' -> 'on the left'; 'top left' -> 'in the top left'; 'top' -> 'at the top'."""
    if position in ("left", "right"):
        return f"on the {position}"
    if position in ("top", "bottom"):
        return f"at the {position}"
    return f"in the {position}"


def how_many(n: int, noun: str, nouns: str) -> str:
    """'There is one circle.' / 'There are three circles.' / 'There are no circles.'"""
    return f"There is one {noun}." if n == 1 else f"There are {NUMBERS[n]} {nouns}."


def sentence(items: list[str]) -> str:
    text = items[0] if len(items) == 1 else ", ".join(items[:-1]) + " and " + items[-1]
    return text[0].upper() + text[1:] + "."


def describe(scene: Scene) -> str:
    """Every shape with its colour and place, in the scene's order, then the word if any."""
    items = [f"{article(s.color)} {s.kind} {where(s.position)}" for s in scene.shapes]
    if scene.word:
        items.append(f"the word {scene.word.text}")
    return sentence(items) if items else "An empty background."


def references(scene: Scene, shape: Shape, avoid: str | tuple[str, ...] = ()) -> list[str]:
    """Noun phrases that pick out `shape` alone in `scene` without naming the attributes in `avoid`
    ("color", "shape", "position")."""
    avoid = (avoid,) if isinstance(avoid, str) else avoid
    kinds = Counter(s.kind for s in scene.shapes)
    colors = Counter(s.color for s in scene.shapes)
    pairs = Counter((s.color, s.kind) for s in scene.shapes)
    refs = []
    if "shape" not in avoid and kinds[shape.kind] == 1:
        refs.append(f"the {shape.kind}")
    if "color" not in avoid and colors[shape.color] == 1:
        refs.append(f"the {shape.color} shape")
    if "color" not in avoid and "shape" not in avoid and pairs[(shape.color, shape.kind)] == 1 and not refs:
        refs.append(f"the {shape.color} {shape.kind}")
    if "position" not in avoid:
        refs.append(f"the shape {where(shape.position)}")
    return refs


# ----------------------------------------------------------------------------- question types


def _color(scene, rng, shape, ref):
    question = rng.choice(
        ("What color is {}?", "What colour is {}?", "Which color is {}?", "Tell me the color of {}.")
    ).format(ref)
    return question, f"It is {shape.color}."


def _shape(scene, rng, shape, ref):
    ref = ref.removeprefix("the shape ")  # "What shape is on the left?"
    question = rng.choice(("What shape is {}?", "Which shape is {}?", "What kind of shape is {}?")).format(ref)
    return question, f"It is {article(shape.kind)}."


def _position(scene, rng, shape, ref):
    question = rng.choice(("Where is {}?", "Where is {} in the picture?", "In which part of the image is {}?"))
    return question.format(ref), f"It is {where(shape.position)}."


def _size(scene, rng, shape, ref):
    question = rng.choice(("How big is {}?", "What size is {}?", "Is {} small, medium or large?")).format(ref)
    return question, f"It is {SIZE_WORDS[shape.size]}."


ABOUT_ONE = {
    "color": (_color, "color"),
    "shape": (_shape, "shape"),
    "position": (_position, "position"),
    "size": (_size, ""),
}
FOLLOWUPS = {
    "color": ("And what color is it?", "What color is it?", "And its colour?"),
    "shape": ("And what shape is it?", "What shape is it?"),
    "position": ("And where is it?", "Where is it?"),
}


def cell(shape: Shape) -> int:
    """The shape's grid cell, row-major (what lab.scene_probe calls a cell)."""
    return shape.row * 3 + shape.col


def _pick(scene: Scene, rng: random.Random, avoid) -> tuple[Shape, str] | None:
    """A shape that can be named without `avoid`, and a phrase naming it; None if there is none."""
    named = [(shape, refs) for shape in scene.shapes if (refs := references(scene, shape, avoid))]
    if not named:
        return None
    shape, refs = rng.choice(named)
    return shape, rng.choice(refs)


def _about_one(scene: Scene, rng: random.Random, qtype: str) -> QA:
    make, avoid = ABOUT_ONE[qtype]
    picked = _pick(scene, rng, avoid)
    if picked is None:  # e.g. "where is ...?" when every shape has a twin of the same colour and kind
        return _describe(scene, rng)
    return QA(qtype, (make(scene, rng, *picked),), ((cell(picked[0]),),))


def _count(scene: Scene, rng: random.Random) -> QA:
    mode = rng.choice(("all", "all", "kind", "color"))
    if mode == "all":
        question = rng.choice(
            (
                "How many shapes are there?",
                "How many shapes do you see?",
                "Count the shapes.",
                "How many objects are in the picture?",
            )
        )
        return QA(
            "count",
            ((question, how_many(len(scene.shapes), "shape", "shapes")),),
            (tuple(cell(s) for s in scene.shapes),),
        )
    if mode == "kind":
        kind = rng.choice([s.kind for s in scene.shapes] + list(SHAPES))  # present ones more often
        n = sum(s.kind == kind for s in scene.shapes)
        question = rng.choice(("How many {} are there?", "How many {} do you see?", "Count the {}."))
        return QA(
            "count",
            ((question.format(plural(kind)), how_many(n, kind, plural(kind))),),
            (tuple(cell(s) for s in scene.shapes if s.kind == kind),),
        )
    color = rng.choice([s.color for s in scene.shapes])
    n = sum(s.color == color for s in scene.shapes)
    question = rng.choice(("How many {} shapes are there?", "How many {} shapes do you see?"))
    return QA(
        "count",
        ((question.format(color), how_many(n, f"{color} shape", f"{color} shapes")),),
        (tuple(cell(s) for s in scene.shapes if s.color == color),),
    )


def _exists(scene: Scene, rng: random.Random) -> QA:
    kind = rng.choice(SHAPES)
    found = [s for s in scene.shapes if s.kind == kind]
    question = rng.choice(("Is there {} in the picture?", "Do you see {}?", "Is there {}?")).format(article(kind))
    if not found:
        answer = f"No, there is no {kind}."
    elif len(found) == 1:
        answer = f"Yes, there is {article(found[0].color)} {kind}."
    else:
        answer = f"Yes, there are {NUMBERS[len(found)]} {plural(kind)}."
    return QA("exists", ((question, answer),), (tuple(cell(s) for s in found),))


def _word(scene: Scene, rng: random.Random) -> QA:
    question = rng.choice(
        (
            "What does the text say?",
            "What word is written?",
            "What is written in the picture?",
            "Read the word in the image.",
            "What does it say?",
        )
    )
    return QA("word", ((question, f"It says {scene.word.text}." if scene.word else "There is no text."),))


def _describe(scene: Scene, rng: random.Random) -> QA:
    question = rng.choice(
        (
            "What do you see?",
            "Describe the picture.",
            "What is in this image?",
            "Describe this image.",
            "What's in the picture?",
        )
    )
    return QA("describe", ((question, describe(scene)),))


def _followup(scene: Scene, rng: random.Random) -> QA:
    """Ask about one shape, then about another of its attributes; neither question names the answer."""
    orders = [(a, b) for a in FOLLOWUPS for b in FOLLOWUPS if a != b]
    rng.shuffle(orders)
    # ("position", "color") needs a shape whose kind is unique, ...; colour and shape questions
    # can always name a shape by its position, so the loop always finds one.
    for first, second in orders:
        make, avoid = ABOUT_ONE[first]
        picked = _pick(scene, rng, (avoid, second))
        if picked:
            break
    shape = picked[0]
    opening = make(scene, rng, *picked)
    answer = ABOUT_ONE[second][0](scene, rng, shape, "it")[1]
    return QA("followup", (opening, (rng.choice(FOLLOWUPS[second]), answer)), ((cell(shape),), (cell(shape),)))


def make_question(scene: Scene, rng: random.Random, qtype: str) -> QA:
    """One conversation of the given type about `scene`."""
    if qtype in ABOUT_ONE:
        return _about_one(scene, rng, qtype)
    return {"count": _count, "exists": _exists, "word": _word, "describe": _describe, "followup": _followup}[qtype](
        scene, rng
    )


def scene_questions(scene: Scene, rng: random.Random, count: int = 2) -> list[QA]:
    """`count` conversations of different types about one scene."""
    weights = dict(WEIGHTS)
    # A scene with a word is asked to read it about half the time; one without, now and then
    # ("There is no text.").
    weights["word"] = 8 if scene.word else 0.3
    if not scene.shapes:
        weights = {"word": 1, "describe": 1}
    types = []
    while len(types) < min(count, len(weights)):
        left = [t for t in weights if t not in types]
        types.append(rng.choices(left, [weights[t] for t in left])[0])
    return [make_question(scene, rng, qtype) for qtype in types]

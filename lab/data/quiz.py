"""Fresh questions about a training scene, drawn anew every time the scene is picked.

A dataset line about a generated scene asks one question (about 45 tokens of prompt for one
or two tokens that depend on the picture). Training can instead ask several questions about
the same picture in one conversation, drawn fresh from the scene's spec each time it comes
up: more answers that need the picture per forward pass, and never the same quiz twice.

    conversation = quiz(example, random.Random(step), max_questions=4)
    # user [picture] "What color is the star?" / assistant "It is red." /
    # user "How many shapes are there?" / assistant "There are three shapes." / ...

Only the first user turn carries the picture, as in a chat where the person asks on.
`draw_quiz` also says, for each answer, which grid cells of the picture it is about (what the
training's grounding loss points the decoder's attention at, lab.grounding).
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from engine.types import Conversation, Turn
from lab.data.dataset import Example
from lab.data.questions import scene_questions
from lab.data.scenes import Scene


def is_quizzable(example: Example) -> bool:
    """A generated scene (its spec is in meta) shown in the first user turn."""
    turns = example.conversation.turns
    return bool(example.meta.get("scene")) and bool(turns) and turns[0].role == "user" and len(turns[0].images) == 1


@dataclass(frozen=True)
class Quiz:
    conversation: Conversation
    answer_cells: tuple[tuple[int, ...], ...]  # per assistant turn, the grid cells its answer is about


def draw_quiz(example: Example, rng: random.Random, max_questions: int) -> Quiz:
    """A conversation of 1..max_questions (uniformly) question types about the example's scene,
    with the cells each answer is about."""
    scene = Scene.from_dict(example.meta["scene"])
    picture = example.conversation.turns[0].images
    turns: list[Turn] = []
    cells: list[tuple[int, ...]] = []
    for qa in scene_questions(scene, rng, count=rng.randint(1, max_questions)):
        for i, (question, answer) in enumerate(qa.turns):
            turns.append(Turn("user", question, images=[] if turns else list(picture), created=0.0))
            turns.append(Turn("assistant", answer, created=0.0))
            cells.append(qa.cells[i] if qa.cells else ())
    return Quiz(Conversation(example.conversation.system_prompt, turns), tuple(cells))


def quiz(example: Example, rng: random.Random, max_questions: int) -> Conversation:
    """A conversation of 1..max_questions (uniformly) question types about the example's scene."""
    return draw_quiz(example, rng, max_questions).conversation

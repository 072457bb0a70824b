"""Training-time quizzes: fresh questions about a dataset scene, the picture in the first turn only."""

from __future__ import annotations

import random
import re
from pathlib import Path

from engine.types import Conversation, Turn
from lab.data.dataset import Example
from lab.data.questions import NUMBERS, describe
from lab.data.quiz import is_quizzable, quiz
from lab.data.scenes import random_scene

PICTURE = Path("/data/images/scenes/train/00001.png")


def scene_example(scene, system: str = "") -> Example:
    turns = [
        Turn("user", "What do you see?", images=[PICTURE], created=0.0),
        Turn("assistant", describe(scene), created=0.0),
    ]
    return Example(
        "scene-train-00001-0",
        Conversation(system, turns),
        "describe",
        describe(scene),
        "scene",
        {"scene": scene.to_dict()},
    )


def test_a_quiz_asks_one_to_n_questions_about_the_picture_shown_once():
    lengths = set()
    for i in range(60):
        scene = random_scene(random.Random(f"quiz/{i}"))
        conversation = quiz(scene_example(scene, system="Be brief."), random.Random(i), max_questions=3)
        turns = conversation.turns
        assert conversation.system_prompt == "Be brief."
        assert [t.role for t in turns] == ["user", "assistant"] * (len(turns) // 2)
        assert turns[0].images == [PICTURE] and not any(t.images for t in turns[1:])
        questions = sum(
            not t.text.startswith(("And ", "What color is it", "What shape is it", "Where is it"))
            for t in turns
            if t.role == "user"
        )
        assert 1 <= questions <= 3
        lengths.add(questions)
        colours = {s.color for s in scene.shapes}
        for turn in turns:  # every answer is true of the scene
            if turn.role != "assistant":
                continue
            if match := re.fullmatch(r"It is (\w+)\.", turn.text):
                assert match[1] in colours | {"small", "large"} | {s.kind for s in scene.shapes}
            if match := re.fullmatch(r"There are (\w+) shapes\.", turn.text):
                assert NUMBERS.index(match[1]) == len(scene.shapes)
            if turn.text.startswith(("A ", "An ")) and "shape" not in turn.text:
                assert turn.text == describe(scene)
    assert lengths == {1, 2, 3}


def test_the_same_draw_gives_the_same_quiz_and_other_draws_vary():
    example = scene_example(random_scene(random.Random("quiz/same")))
    texts = lambda seed: [t.text for t in quiz(example, random.Random(seed), 4).turns]  # noqa: E731
    assert texts(7) == texts(7)
    assert len({tuple(texts(seed)) for seed in range(10)}) >= 5


def test_only_generated_scenes_are_quizzed():
    scene = random_scene(random.Random("quiz/only"))
    assert is_quizzable(scene_example(scene))
    chat = Example(
        "chitchat-0",
        Conversation("", [Turn("user", "Hi", created=0.0), Turn("assistant", "Hello", created=0.0)]),
        "chitchat",
        "Hello",
    )
    assert not is_quizzable(chat)
    photo = scene_example(scene)
    photo.meta = {}
    assert not is_quizzable(photo)

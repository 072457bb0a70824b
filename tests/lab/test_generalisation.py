"""lab.generalisation: its scoring, and the command end to end on a tiny random model."""

from __future__ import annotations

import json
import random

import pytest
from tiny_models import tiny_model, tiny_tokenizer

from engine.loading import save_checkpoint
from lab import generalisation as G
from lab.data.scenes import Scene, Shape


def test_colour_and_shape_answers_need_the_right_word_and_no_other():
    assert G.colour_right("It is red.", "red")
    assert G.colour_right("It's crimson", "red")
    assert not G.colour_right("It is red and blue.", "red")
    assert not G.colour_right("It is grey.", "white")
    assert G.shape_right("It is a circle.", "circle") and G.shape_right("a disc", "circle")
    assert G.shape_right("It is a plus sign.", "cross")
    assert not G.shape_right("A star or a cross", "star")


def test_count_answers_say_the_one_number():
    assert G.count_right("There are three shapes.", 3) and G.count_right("3", 3)
    assert G.count_right("There are no stars.", 0)
    assert not G.count_right("There are three shapes, one red.", 3)
    assert not G.count_right("There is one shape.", 2)


def test_a_description_names_every_shape_with_its_colour():
    scene = Scene("plain", ((255, 255, 255),), (Shape("circle", "red", "small", 0, 0),
                                                  Shape("star", "blue", "large", 1, 1)))  # fmt: skip
    assert G.names_every_shape("A red circle on the left and a blue star in the center.", scene)
    assert G.names_every_shape("I see a red filled circle and two blue stars.", scene)
    assert not G.names_every_shape("A red circle and a star.", scene)
    assert not G.names_every_shape("A blue circle and a red star.", scene)


def test_expected_facts_come_from_the_answers():
    scene = Scene("plain", ((255, 255, 255),), (Shape("circle", "red", "small", 0, 0),))
    asked = {q: qa for q, _, qa in G.questions(scene, random.Random(0))}
    assert G.expected(asked["color"]) == "red" and G.expected(asked["shape"]) == "circle"
    assert G.expected(asked["count"]) in (0, 1)


def test_every_set_is_seeded():
    for name in G.SETS:
        (a, pa), (b, pb) = G.scene_set(name, 1, seed=5)[0], G.scene_set(name, 1, seed=5)[0]
        assert a == b and pa == pb
    with pytest.raises(ValueError):
        G.scene_set("nope", 1)


def test_the_command_runs_on_a_tiny_model(tmp_path, capsys):
    model = save_checkpoint(tmp_path / "tiny", tiny_model(seed=2), tiny_tokenizer())
    code = G.main(["--model", str(model), "--n", "1", "--sets", "train,train-varied,second-plain", "--device", "cpu",
                   "--out", str(tmp_path / "report"), "--json"])  # fmt: skip
    assert code == 0
    results = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert set(results["sets"]) == {"train", "train-varied", "second-plain"}
    for result in results["sets"].values():
        assert result["scenes"] == 1 and result["asked"]["describe"] == 1
        assert all(a is None or 0 <= a <= 1 for a in result["accuracy"].values())
    assert "bar_met" in results
    assert (tmp_path / "report" / "generalisation.md").read_text().startswith("## Generalisation")

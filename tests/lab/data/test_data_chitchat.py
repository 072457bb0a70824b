"""Chit-chat from chatterbot-corpus: parsed into alternating turns, split by conversation, stably."""

from __future__ import annotations

import random

import pytest

from lab.data.chitchat import Dialogue, corpus_dir, heldout_score, load_dialogues, normalise, split_dialogues


@pytest.fixture(scope="module")
def dialogues():
    return load_dialogues()


def test_the_english_corpus_loads_offline(dialogues):
    assert corpus_dir().is_dir()
    assert len(dialogues) > 800
    assert len(set(d.lines for d in dialogues)) == len(dialogues), "duplicates are removed"
    for dialogue in dialogues:
        assert len(dialogue.lines) >= 2 and len(dialogue.lines) % 2 == 0
        assert all(isinstance(line, str) and line == line.strip() and line for line in dialogue.lines)
    assert {"greetings", "ai", "trivia"} <= {d.category for d in dialogues}


def test_split_is_by_conversation_and_groups_the_same_opening(dialogues):
    train, heldout = split_dialogues(dialogues, 0.1)
    assert len(train) + len(heldout) == len(dialogues)
    assert 0.05 < len(heldout) / len(dialogues) < 0.2
    train_openings = {normalise(d.lines[0]) for d in train}
    assert not any(normalise(d.lines[0]) in train_openings for d in heldout), "a held-out prompt is in train"
    assert {d.lines for d in train}.isdisjoint({d.lines for d in heldout})


def test_split_is_stable_whatever_the_order(dialogues):
    train, heldout = split_dialogues(dialogues, 0.1)
    shuffled = list(dialogues)
    random.Random(1).shuffle(shuffled)
    train2, heldout2 = split_dialogues(shuffled, 0.1)
    assert {d.lines for d in heldout2} == {d.lines for d in heldout}
    assert {d.lines for d in train2} == {d.lines for d in train}
    # The score depends on the text only: fixed across runs, processes and machines.
    hello = Dialogue("greetings", ("Hello", "Hi"))
    assert heldout_score(hello) == heldout_score(Dialogue("other", ("hello!", "Something else")))
    assert 0 <= heldout_score(hello) < 1
    # A larger fraction only moves dialogues from train to held-out.
    _, more = split_dialogues(dialogues, 0.2)
    assert {d.lines for d in heldout} <= {d.lines for d in more}


def test_broken_yaml_entries_are_skipped(tmp_path):
    (tmp_path / "mixed.yml").write_text(
        "categories:\n- mixed\nconversations:\n"
        "- - Hello\n  - Hi there\n  - How are you?\n"  # odd length: the unanswered line is dropped
        "- A broken entry - 'not a list'\n"
        "- - Only one line\n"
        "- - Are you a robot?\n  - yes\n"  # YAML reads a bare yes as True: skipped
        "- - What year?\n  - 1984\n"
    )
    found = load_dialogues(tmp_path)
    assert [d.lines for d in found] == [("Hello", "Hi there"), ("What year?", "1984")]
    assert found[0].pairs == [("Hello", "Hi there")]

"""Evaluation metrics against hand-computed values."""

import math

import pytest

from lab.metrics import corpus_bleu, exact_match, rouge_l


def test_exact_match_ignores_case_and_punctuation():
    assert exact_match("It is RED.", "it is red")
    assert not exact_match("It is red.", "It is blue.")


def test_bleu_is_100_for_identical_text_and_0_without_overlap():
    refs = ["the cat sat on the mat today", "a blue star on the left"]
    assert corpus_bleu(refs, refs) == pytest.approx(100.0)
    assert corpus_bleu(["dog runs fast"], ["the cat sat"]) == 0.0


def test_bleu_matches_a_hand_computed_value():
    # prediction "the cat sat on a mat" vs reference "the cat sat on the mat":
    # p1 = 5/6, p2 = (3+1)/(5+1), p3 = (2+1)/(4+1), p4 = (1+1)/(3+1), equal lengths -> BP = 1
    expected = 100 * math.exp((math.log(5 / 6) + math.log(4 / 6) + math.log(3 / 5) + math.log(2 / 4)) / 4)
    assert corpus_bleu(["the cat sat on a mat"], ["the cat sat on the mat"]) == pytest.approx(expected)


def test_rouge_l_uses_the_longest_common_subsequence():
    # LCS("a b c d", "a c d e") = "a c d" = 3 -> P = R = 3/4 -> F1 = 0.75
    assert rouge_l(["a b c d"], ["a c d e"]) == pytest.approx(75.0)
    assert rouge_l([""], ["anything"]) == 0.0


def test_grounding_checks_of_descriptions():
    from engine.observe import ImageObservations
    from lab.evaluate import names_every_shape, says_something_true

    scene = {"shapes": [{"kind": "circle", "color": "red"}, {"kind": "star", "color": "blue"}]}
    assert names_every_shape("A red circle on the left and a blue star at the top.", scene)
    assert not names_every_shape("A red circle on the left and a blue square at the top.", scene)
    seen = ImageObservations(text=("OPEN",), faces=1, colors=("brown", "white"), tools=("ocr", "faces", "colors"))
    assert says_something_true("A dog. The main colors are brown and gray.", seen)
    assert says_something_true("A sign that says open.", seen)
    assert says_something_true("I see one face.", seen)
    assert not says_something_true("A green field under a blue sky.", seen)

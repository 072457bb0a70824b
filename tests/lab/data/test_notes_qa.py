"""lab.data.notes_qa: questions about a picture's findings and answers taken from them alone."""

from __future__ import annotations

import random
import re

from engine.observe import ImageObservations
from lab.data.notes_qa import MANY_WORDS, describe, notes_example, page_lines, question_and_answer, sample_findings

TOOLS = ("ocr", "faces", "colors", "shapes")


def test_the_findings_cover_drawings_plain_pictures_pages_and_photos():
    rng = random.Random(0)
    kinds = {"drawing": 0, "plain": 0, "page": 0, "photo": 0}
    for _ in range(2000):
        found = sample_findings(rng)
        if found.shapes:
            kinds["drawing"] += 1
        elif found.shapes is not None:
            kinds["plain"] += 1
        elif len(" ".join(found.text).split()) > MANY_WORDS:
            kinds["page"] += 1
        else:
            kinds["photo"] += 1
    assert all(count > 100 for count in kinds.values()), kinds


def test_a_plain_picture_is_described_with_its_colour_and_nothing_drawn():
    plain = ImageObservations(faces=0, colors=("black",), shapes=(), tools=TOOLS)
    assert describe(plain) == "It is a plain black picture with nothing drawn on it."
    rng = random.Random(3)
    for _ in range(200):  # no question about a shape invents one
        question, answer = question_and_answer(plain, rng)
        assert not re.search(r"\b(red|green|blue|circle|square|triangle) (shape|is)\b", answer), (question, answer)


def test_a_page_of_text_is_quoted_by_its_start_and_has_no_faces():
    lines = page_lines(random.Random(5))
    page = ImageObservations(text=lines, faces=0, colors=("white", "black"), shapes=None, tools=TOOLS)
    first_words = " ".join(" ".join(lines).split()[:6])
    assert describe(page).endswith(f'It has a lot of text, starting with "{first_words}".')
    assert "face" not in describe(page)
    short = ImageObservations(text=("EXIT",), faces=1, colors=("red",), shapes=None, tools=TOOLS)
    assert describe(short).endswith('There is one face in it. It has the text "EXIT".')


def test_every_answer_states_the_findings_face_count_or_none():
    rng = random.Random(7)
    numbers = ("no", "one", "two", "three")
    for _ in range(1500):
        messages, answer = notes_example(rng)
        note = messages[0]["content"]
        said = re.search(r"\b(no|one|two|three) faces?\b", answer)
        if said is None:
            continue
        found = re.search(r"There (?:is|are) (one|two|three) faces? in it", note)
        expected = found.group(1) if found else "no"
        assert numbers.index(said.group(1)) == numbers.index(expected), (note, answer)

"""Conversation titles tell conversations apart (issue 21.6): the same first question about
four pictures gives four different titles, with the built-in backend (a tiny random model that
reads the pictures' colours with the real tools) and a real store."""

from __future__ import annotations

import pytest
from app_helpers import FakeBackend
from PIL import Image

from chat_app.handlers import ChatService, Options
from chat_app.titles import hints, shorten

KEY = "browser:" + "b" * 32


@pytest.fixture
def pictures(tmp_path):
    paths = []
    for colour in ("red", "green", "blue", "yellow"):
        path = tmp_path / f"{colour}.png"
        Image.new("RGB", (64, 48), colour).save(path)
        paths.append(path)
    return paths


def test_four_pictures_asked_the_same_question_get_four_titles(store, settings, speech, tiny_model_dir, pictures):
    from engine.backends import load_backend

    backend = load_backend(str(tiny_model_dir), device="cpu", asr=False)
    service = ChatService(store, {backend.name: backend}, settings, speech)
    options = Options(backend.name, temperature=0.0, max_new_tokens=12)
    for picture in pictures:
        last = list(service.send(KEY, None, "What do you see?", [str(picture)], options, "s"))[-1]
        assert last.done and last.notice is None, last.notice
    titles = [label for label, _ in service.history.choices(KEY)]
    assert len(titles) == 4 and len(set(titles)) == 4, titles
    assert all(t.startswith("What do you see?") for t in titles)
    assert titles[-1] == "What do you see?"  # the first keeps its title; the later ones get a hint


def test_the_hint_is_what_was_read_then_the_reply_then_the_colours():
    seen = ["image 1: text: EXIT | 24; faces: 0; colors: red, white"]
    assert hints("A sign. It is red.", seen) == ["“EXIT | 24”", "A sign", "red, white"]
    assert hints("", ["image 1: text: none; colors: blue"]) == ["blue"]
    assert (
        shorten("**A very long reply** that goes on and on and on about everything")
        == "A very long reply that goes on and on…"
    )


def test_the_same_reply_too_gets_a_number(store, settings, speech):
    service = ChatService(store, {"fake": FakeBackend(pieces=("Same.",))}, settings, speech)
    for _ in range(4):  # the fake backend always "sees" red
        list(service.send(KEY, None, "hi", [], Options("fake"), "s"))
    assert sorted(label for label, _ in service.history.choices(KEY)) == ["hi", "hi (2)", "hi — Same", "hi — red"]

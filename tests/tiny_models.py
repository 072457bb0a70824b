"""Tiny random-weight models and tokenizers for tests (built in milliseconds, no downloads)."""

from __future__ import annotations

import functools

import torch

from engine.backends.builtin import BuiltinBackend
from engine.config import preset
from engine.model import MultimodalModel
from engine.tokenizer import ChatTokenizer

CORPUS = [
    "hello there, how are you today?",
    "I am fine, thank you very much.",
    "What color is the circle? The circle is red.",
    "There are three squares and a blue star.",
    "Is that speech or music? It sounds like speech.",
    "Ünïcödé tëxt, 日本語 and emoji 🎉 too.",
] * 20


@functools.cache
def tiny_tokenizer(vocab_size: int = 400) -> ChatTokenizer:
    return ChatTokenizer.train(CORPUS, vocab_size=vocab_size)


def tiny_model(seed: int = 0, **overrides) -> MultimodalModel:
    """A random tiny model; `overrides` replace fields of the 'tiny' preset."""
    torch.manual_seed(seed)
    config = preset("tiny", vocab_size=tiny_tokenizer().vocab_size, **overrides)
    return MultimodalModel(config).eval()


def tiny_backend(seed: int = 0, **overrides) -> BuiltinBackend:
    return BuiltinBackend(tiny_model(seed, **overrides), tiny_tokenizer(), name="builtin:tiny")

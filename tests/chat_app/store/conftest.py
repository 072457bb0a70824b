"""Fixtures of the store tests: a store on a real SQLite file (or in memory where speed
matters) in a fresh data dir per test."""

from __future__ import annotations

import pytest

from chat_app.store import ConversationStore


@pytest.fixture
def data_dir(tmp_path):
    return tmp_path / "data"


@pytest.fixture
def store(data_dir):
    with ConversationStore(data_dir) as opened:
        yield opened


@pytest.fixture
def memory_store(tmp_path):
    with ConversationStore(tmp_path / "memory", "sqlite://") as opened:
        yield opened

"""Fixtures of the web app tests: a tiny random model directory, a store and settings in a
fresh data dir, a ChatService over a scripted backend, and one real server per session."""

from __future__ import annotations

import pytest
from app_helpers import FakeBackend, FakeSpeech, Server

from chat_app.handlers import ChatService, Options
from chat_app.settings import Settings
from chat_app.store import ConversationStore


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory):
    """A random tiny checkpoint (replies are gibberish) with room for long replies: a greedy 4,096-token
    reply takes seconds, so a stop click always lands while it is still streaming."""
    from engine.loading import save_checkpoint
    from tests.tiny_models import tiny_model, tiny_tokenizer

    directory = tmp_path_factory.mktemp("tiny-model")
    return save_checkpoint(directory, tiny_model(0, max_seq_len=8192, observations=("colors",)), tiny_tokenizer())


@pytest.fixture
def settings(tmp_path):
    return Settings(data_dir=tmp_path / "data")


@pytest.fixture
def store(settings):
    with ConversationStore(settings.data_dir) as opened:
        yield opened


@pytest.fixture
def backend():
    return FakeBackend()


@pytest.fixture
def speech():
    return FakeSpeech()


@pytest.fixture
def service(store, backend, settings, speech):
    return ChatService(store, {backend.name: backend}, settings, speech)


@pytest.fixture
def options(backend):
    return Options(model=backend.name, temperature=0.0)


@pytest.fixture(scope="session")
def server(tiny_model_dir, tmp_path_factory):
    """The app in a subprocess, shared by the API and browser tests (restarted by one of them)."""
    running = Server(tiny_model_dir, tmp_path_factory.mktemp("server") / "data").start()
    yield running
    running.stop(kill=True)

"""A model's own decoding defaults (generation_config.json): read from built-in and Hugging Face
folders, refused clearly when corrupt, and used by the /v1 API where a request is silent."""

from __future__ import annotations

import json
import shutil

import pytest
from tiny_models import tiny_model, tiny_tokenizer

from chat_app.api import parse_request
from engine.backends import load_backend
from engine.backends.base import Sampling
from engine.loading import GENERATION_FILE, save_checkpoint, save_sampling
from engine.types import CheckpointError

HELLO = {"messages": [{"role": "user", "content": "hello"}]}


@pytest.fixture
def builtin_dir(tmp_path):
    return save_checkpoint(tmp_path / "model", tiny_model(0), tiny_tokenizer())


def test_a_builtin_checkpoint_says_how_to_decode_it(builtin_dir):
    assert load_backend(str(builtin_dir), device="cpu").sampling is None  # says nothing: the app decides
    save_sampling(builtin_dir, temperature=0.0)
    assert load_backend(str(builtin_dir), device="cpu").sampling == Sampling(temperature=0.0, top_p=1.0)
    save_sampling(builtin_dir, temperature=0.4, top_p=0.8)
    assert load_backend(str(builtin_dir), device="cpu").sampling == Sampling(temperature=0.4, top_p=0.8)


@pytest.mark.parametrize(
    "text, problem",
    [
        ("{not json", "corrupt"),
        ('{"top_p": 0.9}', "corrupt"),
        ('["temperature", 0]', "corrupt"),
        ('{"temperature": "warm"}', "corrupt"),
        ('{"temperature": 7}', "temperature must be between 0 and 2"),
        ('{"temperature": 0.5, "top_p": 0}', "top_p above 0"),
    ],
)
def test_a_corrupt_generation_config_is_refused_by_name(builtin_dir, text, problem):
    (builtin_dir / GENERATION_FILE).write_text(text)
    with pytest.raises(CheckpointError, match=problem) as error:
        load_backend(str(builtin_dir), device="cpu")
    assert GENERATION_FILE in str(error.value)


def test_a_hf_folder_with_sampling_settings_gives_them(tiny_llama_dir, tmp_path):
    assert load_backend(str(tiny_llama_dir), device="cpu").sampling is None  # derived from config.json
    folder = tmp_path / "tiny-llama"
    shutil.copytree(tiny_llama_dir, folder)
    path = folder / GENERATION_FILE
    written = {k: v for k, v in json.loads(path.read_text()).items() if k != "_from_model_config"}
    path.write_text(json.dumps(written | {"do_sample": True, "temperature": 0.6, "top_p": 0.9}))
    assert load_backend(str(folder), device="cpu").sampling == Sampling(temperature=0.6, top_p=0.9)
    path.write_text(json.dumps(written | {"do_sample": False}))
    assert load_backend(str(folder), device="cpu").sampling == Sampling(temperature=0.0, top_p=1.0)


def test_the_api_uses_the_models_sampling_only_where_the_request_is_silent():
    _, config, _, _ = parse_request(HELLO, 1024, Sampling(temperature=0.0, top_p=1.0))
    assert (config.temperature, config.top_p) == (0.0, 1.0)
    _, config, _, _ = parse_request(HELLO | {"temperature": 0.9, "top_p": 0.5}, 1024, Sampling(0.0, 1.0))
    assert (config.temperature, config.top_p) == (0.9, 0.5)
    _, config, _, _ = parse_request(HELLO, 1024)
    assert (config.temperature, config.top_p) == (0.7, 1.0)  # GenerationConfig's own defaults

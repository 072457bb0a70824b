"""The disk cache of tool observations: written once, read back instead of re-running the tools."""

import json

import pytest

from engine import observe
from engine.config import preset
from engine.prompt import build_prompt
from engine.speech import asr
from lab.data import BuildConfig, build_dataset, load_dataset
from lab.observe_cache import load_observations
from tests.tiny_models import tiny_tokenizer

pytestmark = pytest.mark.slow
TOOLS = ("ocr", "faces", "colors", "asr")


@pytest.fixture(scope="module")
def examples(tmp_path_factory):
    out = tmp_path_factory.mktemp("dataset")
    build_dataset(
        BuildConfig(
            out=out, scenes=6, sounds=4, photos=False, chitchat=False, cache_dir=tmp_path_factory.mktemp("sound_cache")
        )
    )
    return [e for e in load_dataset(out, "train") if any(t.images or t.audio for t in e.conversation.turns)]


def forget_everything():
    """A fresh process, as far as the observation tables go."""
    observe._known.clear()
    observe._observe_cached.cache_clear()
    asr._heard.clear()
    asr.default_transcriber().clear_cache()


def notes(examples):
    """The prompts' text, observation notes included."""
    config, tokenizer = preset("tiny", observations=TOOLS, max_seq_len=4096), tiny_tokenizer()
    return [tokenizer.decode(build_prompt(e.conversation, tokenizer, config).ids) for e in examples]


def test_the_cache_is_written_once_and_then_replaces_the_tools(examples, tmp_path, monkeypatch):
    cache = tmp_path / "observations.json"
    forget_everything()
    load_observations(examples, TOOLS, cache)
    entries = json.loads(cache.read_text())["entries"]
    images = {p for e in examples for t in e.conversation.turns for p in t.images}
    clips = {p for e in examples for t in e.conversation.turns for p in t.audio}
    assert images and clips
    assert sum(k.startswith("image:") for k in entries) == len(images)
    assert sum(k.startswith("audio:") for k in entries) == len(clips)
    expected = notes(examples)
    assert any("heard:" in text for text in expected) and any("colors:" in text for text in expected)

    forget_everything()

    def tool_ran(*args, **kwargs):
        raise AssertionError("a tool ran although its result was cached")

    for name in ("read_text", "count_faces", "dominant_colors"):
        monkeypatch.setattr(observe, name, tool_ran)
    monkeypatch.setattr(asr.Transcriber, "transcribe", tool_ran)
    load_observations(examples, TOOLS, cache)
    assert notes(examples) == expected


def test_a_corrupt_or_outdated_cache_is_recomputed_not_trusted(examples, tmp_path, capsys, monkeypatch):
    cache = tmp_path / "observations.json"
    cache.write_text("{not json")
    forget_everything()
    load_observations(examples, ("colors",), cache)
    assert "unreadable observation cache" in capsys.readouterr().err
    good = json.loads(cache.read_text())
    assert good["entries"] and all(k.startswith("image:colors:") for k in good["entries"])

    # Entries written with other tool settings (here: another OCR size) are not served.
    monkeypatch.setattr(observe, "OCR_MIN_SIDE", observe.OCR_MIN_SIDE + 1)
    forget_everything()
    calls = []
    real = observe.dominant_colors
    monkeypatch.setattr(observe, "dominant_colors", lambda image: calls.append(1) or real(image))
    load_observations(examples, ("colors",), cache)
    assert calls, "the tools should have run again"
    assert json.loads(cache.read_text())["settings"] != good["settings"]


def test_a_model_without_observations_does_nothing(examples, tmp_path):
    load_observations(examples, (), tmp_path / "observations.json")
    assert not (tmp_path / "observations.json").exists()

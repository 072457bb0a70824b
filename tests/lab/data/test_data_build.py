"""The whole dataset: one command, reproducible from a seed, held-out apart, read back with checks."""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import pytest

from engine.types import Conversation, InputError
from lab.data import BuildConfig, DataError, build_dataset, load_dataset
from lab.data.__main__ import main
from lab.data.photos import HELDOUT_PHOTOS
from lab.data.questions import describe
from lab.data.scenes import Scene

SMALL = dict(scenes=40, sounds=24, photo_variants=1, workers=2)


def _digest(folder: Path) -> dict[str, str]:
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


@pytest.fixture(scope="module")
def built(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("dataset")
    build_dataset(BuildConfig(out=root / "a", seed=0, cache_dir=root / "cache-a", **SMALL))
    return root / "a"


def test_same_seed_gives_identical_files(built, tmp_path):
    # Through the command line, with its own empty sound cache: nothing is shared but the seed.
    assert (
        main(
            [
                "--out",
                str(tmp_path / "b"),
                "--seed",
                "0",
                "--scenes",
                "40",
                "--sounds",
                "24",
                "--photo-variants",
                "1",
                "--cache",
                str(tmp_path / "cache-b"),
            ]
        )
        == 0
    )
    assert (tmp_path / "b" / "train.jsonl").read_bytes() == (built / "train.jsonl").read_bytes()
    assert (tmp_path / "b" / "heldout.jsonl").read_bytes() == (built / "heldout.jsonl").read_bytes()
    assert _digest(tmp_path / "b") == _digest(built)


def test_another_seed_gives_other_scenes(built, tmp_path):
    build_dataset(
        BuildConfig(
            out=tmp_path / "c", seed=1, cache_dir=tmp_path / "cache", scenes=40, sounds=0, photos=False, chitchat=False
        )
    )
    assert (tmp_path / "c" / "train.jsonl").read_bytes() != (built / "train.jsonl").read_bytes()
    manifest = json.loads((tmp_path / "c" / "manifest.json").read_text())
    assert set(manifest["counts"]["train"]) <= {
        "color",
        "shape",
        "count",
        "position",
        "size",
        "exists",
        "word",
        "describe",
        "followup",
        "total",
    }


def test_heldout_is_apart_from_train(built):
    train, heldout = load_dataset(built, "train"), load_dataset(built, "heldout")
    assert {e.id for e in train}.isdisjoint({e.id for e in heldout})

    def media(examples):
        return {p for e in examples for t in e.conversation.turns for p in [*t.images, *t.audio]}

    train_media, heldout_media = media(train), media(heldout)
    assert train_media.isdisjoint(heldout_media)

    def digests(paths):
        return {hashlib.sha256(Path(p).read_bytes()).hexdigest() for p in paths}

    assert digests(train_media).isdisjoint(digests(heldout_media)), "the same picture or clip in both splits"

    def scene_keys(examples):
        return {Scene.from_dict(e.meta["scene"]) for e in examples if e.source == "scene"}

    assert scene_keys(train).isdisjoint(scene_keys(heldout))

    def openings(examples):
        return {e.conversation.turns[0].text for e in examples if e.qtype == "chitchat"}

    assert openings(train).isdisjoint(openings(heldout))

    def said(examples):
        return {c["text"] for e in examples if e.source == "sound" for c in e.meta["clips"] if "text" in c}

    assert said(train).isdisjoint(said(heldout))
    train_photos = {e.meta["photo"] for e in train if e.source == "photo"}
    heldout_photos = {e.meta["photo"] for e in heldout if e.source == "photo"}
    assert heldout_photos == set(HELDOUT_PHOTOS) and train_photos.isdisjoint(heldout_photos)


def test_examples_are_conversations_with_absolute_media(built):
    examples = load_dataset(built, "train")
    sources = {e.source for e in examples}
    assert sources == {"scene", "photo", "sound", "chitchat"}
    for example in examples:
        assert isinstance(example.conversation, Conversation)
        turns = example.conversation.turns
        assert [t.role for t in turns] == ["user", "assistant"] * (len(turns) // 2)
        assert turns[-1].text == example.answer and example.qtype
        for turn in turns:
            for path in [*turn.images, *turn.audio]:
                assert Path(path).is_absolute() and Path(path).is_file()
        if example.source == "scene":
            assert turns[0].images and turns[0].images[0].suffix == ".png"
        if example.qtype == "describe":
            assert example.answer == describe(Scene.from_dict(example.meta["scene"]))
        if example.qtype == "spoken":
            assert all(t.audio and not t.text for t in turns if t.role == "user")
    first = json.loads((built / "train.jsonl").read_text().splitlines()[0])
    assert list(first) == ["id", "system", "turns", "qtype", "answer", "source", "meta"]
    assert list(first["turns"][0]) == ["role", "text", "images", "audio"]


def test_a_missing_or_corrupt_media_file_is_named(built, tmp_path):
    copy = tmp_path / "copy"
    shutil.copytree(built, copy)
    line = json.loads((copy / "heldout.jsonl").read_text().splitlines()[0])
    media = next(m for t in line["turns"] for m in t["images"] + t["audio"]) if line["source"] != "chitchat" else None
    media = media or "images/scenes/heldout/00000.png"
    (copy / media).unlink()
    with pytest.raises(DataError, match=f"{Path(media).name} is missing") as caught:
        load_dataset(copy, "heldout")
    assert isinstance(caught.value, InputError) and "heldout.jsonl, line" in str(caught.value)
    (copy / media).write_bytes(b"GIF89a not what the name says")
    with pytest.raises(DataError, match=f"{Path(media).name} is corrupt"):
        load_dataset(copy, "heldout")
    (copy / media).write_bytes(b"")
    with pytest.raises(DataError, match="is empty"):
        load_dataset(copy, "heldout")
    assert load_dataset(copy, "heldout", check=False)


def test_broken_dataset_files_give_clear_errors(built, tmp_path):
    with pytest.raises(DataError, match="does not exist"):
        load_dataset(tmp_path / "nowhere", "train")
    with pytest.raises(DataError, match="Unknown split"):
        load_dataset(built, "test")
    folder = tmp_path / "broken"
    folder.mkdir()
    with pytest.raises(DataError, match="train.jsonl is missing"):
        load_dataset(folder, "train")
    lines = (built / "train.jsonl").read_text().splitlines()[:3]
    (folder / "train.jsonl").write_text("\n".join(lines[:2] + ['{"id": "x", "turns": [}']) + "\n")
    with pytest.raises(DataError, match=r"train.jsonl, line 3 is not valid JSON"):
        load_dataset(folder, "train", check=False)
    (folder / "train.jsonl").write_text('{"id": "x", "turns": [{"role": "user", "text": "hi"}]}\n')
    with pytest.raises(DataError, match="last turn must be the assistant"):
        load_dataset(folder, "train")
    (folder / "train.jsonl").write_text(
        '{"id": "x", "turns": [{"role": "user", "images": ["../../etc/passwd"]}, {"role": "assistant"}]}\n'
    )
    with pytest.raises(DataError, match="outside the dataset folder"):
        load_dataset(folder, "train")


def test_build_refuses_a_folder_that_holds_something_else(tmp_path):
    (tmp_path / "notes.txt").write_text("mine")
    with pytest.raises(DataError, match="not empty"):
        build_dataset(BuildConfig(out=tmp_path, scenes=1, sounds=0, photos=False, chitchat=False))
    assert (tmp_path / "notes.txt").read_text() == "mine"
    assert main(["--out", str(tmp_path), "--scenes", "1", "--sounds", "0"]) == 2


def test_rebuilding_replaces_the_previous_dataset(tmp_path):
    out = tmp_path / "data"
    build_dataset(BuildConfig(out=out, scenes=30, sounds=0, photos=False, chitchat=False))
    build_dataset(BuildConfig(out=out, scenes=10, sounds=0, photos=False, chitchat=False))
    assert len(list((out / "images" / "scenes" / "train").iterdir())) == 10
    assert {e.source for e in load_dataset(out, "train")} == {"scene"}

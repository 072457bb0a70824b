"""Build the whole dataset into one folder, reproducibly from a seed.

    build_dataset(BuildConfig(out=Path("data/builtin"), seed=0))

writes
    images/scenes/{train,heldout}/NNNNN.png   generated scenes (.jpg for varied scenes with JPEG artefacts)
    images/photos/NAME-V.jpg                  shipped photos (24; three of them held out)
    audio/KEY.wav                             16 kHz mono clips, named by the hash of their spec
    train.jsonl, heldout.jsonl                one conversation per line (see lab.data.dataset)
    manifest.json                             the build settings and counts per split and qtype

Every random choice comes from `random.Random(f"{seed}/{what}/{split}/{index}")`, so the same
seed gives byte-identical files, item i does not change when counts change, and held-out
items come from other streams than train ones (held-out scenes equal to a train scene are
drawn again).
"""

from __future__ import annotations

import dataclasses
import json
import os
import random
import shutil
import sys
from collections import Counter
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from tqdm import tqdm

from engine import preprocess
from engine.observe import observe_image
from lab.data import audio_qa, chitchat, photos
from lab.data.dataset import DataError, record, write_jsonl
from lab.data.questions import scene_questions
from lab.data.scenes import Scene, random_scene, render_scene
from lab.data.sounds import default_cache_dir, render_all
from lab.data.variety import encode_scene

OWNED = ("images", "audio", "train.jsonl", "heldout.jsonl", "manifest.json")


@dataclass
class BuildConfig:
    out: Path
    seed: int = 0
    scenes: int = 6000  # train scenes; held-out gets scenes * heldout_fraction more
    questions_per_scene: int = 2  # conversations per scene, of different question types
    photos: bool = True
    photo_variants: int = 4  # copies of each photo (the first unchanged, the others cropped/flipped)
    sounds: int = 2000  # train clips; held-out gets sounds * heldout_fraction more
    chitchat: bool = True
    heldout_fraction: float = 0.1
    image_size: int = 128  # side of the scene PNGs (the model letterboxes them to its own size)
    variety: bool = False  # varied scenes (lab.data.variety: any canvas, backgrounds, styles, captures)
    cache_dir: Path | None = None  # rendered clips; default ~/.cache/multimodal-chat/sounds
    workers: int = 2


def _user(text: str, images=(), audio=()) -> dict:
    return {"role": "user", "text": text, "images": list(images), "audio": list(audio)}


def _assistant(text: str) -> dict:
    return {"role": "assistant", "text": text}


def _qa_turns(pairs, images=()) -> list[dict]:
    """(question, answer) pairs -> turns; the picture goes with the first question only."""
    turns = []
    for i, (question, answer) in enumerate(pairs):
        turns += [_user(question, images if i == 0 else ()), _assistant(answer)]
    return turns


# ----------------------------------------------------------------------------- scenes


def _scene_spec(job: tuple[int, str, int, bool]) -> Scene:
    seed, split, index, variety = job
    return random_scene(random.Random(f"{seed}/scene/{split}/{index}"), variety=variety)


def scene_specs(
    seed: int, split: str, count: int, avoid: frozenset = frozenset(), variety: bool = False, workers: int = 1
) -> list[Scene]:
    """`count` scenes of one split; none equal to a scene in `avoid`. Varied scenes (drawing one
    renders it to check what stays visible) are drawn in `workers` processes."""
    jobs = [(seed, split, index, variety) for index in range(count)]
    if variety and workers > 1 and count > 16:
        with ProcessPoolExecutor(workers) as pool:
            specs = list(pool.map(_scene_spec, jobs, chunksize=16))
    else:
        specs = [_scene_spec(job) for job in jobs]
    for index, scene in enumerate(specs):
        if scene in avoid:
            rng = random.Random(f"{seed}/scene/{split}/{index}")
            random_scene(rng, variety=variety)  # the same stream as before: the next draw
            while scene in avoid:
                scene = random_scene(rng, variety=variety)
            specs[index] = scene
    return specs


def scene_suffix(scene: Scene) -> str:
    return ".jpg" if scene.look is not None and scene.look.jpeg else ".png"


def _render_scene_file(job: tuple[dict, int, str]) -> None:
    spec, size, path = job
    scene = Scene.from_dict(spec)
    if scene.look is None:
        render_scene(scene, size).save(path, optimize=False, compress_level=6)
    else:
        Path(path).write_bytes(encode_scene(scene, size)[0])


def _map(function, jobs: list, workers: int, desc: str) -> None:
    with tqdm(total=len(jobs), desc=desc, file=sys.stderr, leave=False) as progress:
        if workers > 1 and len(jobs) > 16:
            with ProcessPoolExecutor(workers) as pool:
                for _ in pool.map(function, jobs, chunksize=32):
                    progress.update(1)
        else:
            for job in jobs:
                function(job)
                progress.update(1)


def scene_records(cfg: BuildConfig, split: str, specs: list[Scene]) -> list[dict]:
    folder = Path("images") / "scenes" / split
    (cfg.out / folder).mkdir(parents=True, exist_ok=True)
    names = [f"{i:05d}{scene_suffix(spec)}" for i, spec in enumerate(specs)]
    jobs = [(spec.to_dict(), cfg.image_size, str(cfg.out / folder / name)) for spec, name in zip(specs, names)]
    _map(_render_scene_file, jobs, cfg.workers, f"scenes ({split})")
    records = []
    for i, scene in enumerate(specs):
        image = str(folder / names[i])
        rng = random.Random(f"{cfg.seed}/scene-qa/{split}/{i}")
        for j, qa in enumerate(scene_questions(scene, rng, cfg.questions_per_scene)):
            records.append(
                record(
                    f"scene-{split}-{i:05d}-{j}",
                    _qa_turns(qa.turns, [image]),
                    qa.qtype,
                    "scene",
                    {"scene": scene.to_dict()},
                )
            )
    return records


# ----------------------------------------------------------------------------- photos, chit-chat, sounds


def photo_records(cfg: BuildConfig, split: str) -> list[dict]:
    """Train: every photo but the held-out ones, in `photo_variants` copies; held-out: those
    few, unchanged, to check that on a photo it never saw the model says something true."""
    folder = Path("images") / "photos"
    (cfg.out / folder).mkdir(parents=True, exist_ok=True)
    records = []
    chosen = [p for p in photos.available_photos() if (p.name in photos.HELDOUT_PHOTOS) == (split == "heldout")]
    for photo in tqdm(chosen, desc=f"photos ({split})", file=sys.stderr, leave=False):
        for v in range(cfg.photo_variants if split == "train" else 1):
            rng = random.Random(f"{cfg.seed}/photo/{photo.name}/{v}")
            image = folder / f"{photo.name}-{v}.jpg"
            photos.photo_variant(photo, rng, augment=v > 0).save(cfg.out / image, quality=90)
            seen = observe_image(preprocess.read_image(cfg.out / image))  # what the model will be told
            for j, (qtype, pairs) in enumerate(photos.photo_conversations(photo, rng, seen)):
                records.append(
                    record(
                        f"photo-{photo.name}-{v}-{j}",
                        _qa_turns(pairs, [str(image)]),
                        qtype,
                        "photo",
                        {"photo": photo.name, "package": photo.package},
                    )
                )
    return records


def chitchat_records(dialogues: list[chitchat.Dialogue], split: str) -> list[dict]:
    records = []
    for i, dialogue in enumerate(dialogues):
        turns = [t for user, reply in dialogue.pairs for t in (_user(user), _assistant(reply))]
        records.append(record(f"chat-{split}-{i:04d}", turns, "chitchat", "chitchat", {"category": dialogue.category}))
    return records


def sound_records(cfg: BuildConfig, split: str, plans: list[audio_qa.SoundPlan]) -> list[dict]:
    clips = [clip for plan in plans for clip in plan.clips]
    cached = dict(zip([c.key() for c in clips], render_all(clips, cfg.cache_dir, cfg.workers, f"sounds ({split})")))
    (cfg.out / "audio").mkdir(parents=True, exist_ok=True)
    for key, source in cached.items():
        target = cfg.out / "audio" / f"{key}.wav"
        if not target.exists():
            try:
                os.link(source, target)
            except OSError:  # another file system
                shutil.copyfile(source, target)
    records = []
    for i, plan in enumerate(plans):
        turns = []
        for turn in plan.turns:
            if isinstance(turn, audio_qa.UserTurn):
                turns.append(_user(turn.text, audio=[f"audio/{c.key()}.wav" for c in turn.clips]))
            else:
                turns.append(_assistant(turn))
        records.append(record(f"sound-{split}-{i:05d}", turns, plan.qtype, "sound", plan.meta))
    return records


# ----------------------------------------------------------------------------- the whole build


def _prepare(out: Path) -> None:
    """Make `out` ready: new or empty, or a previous dataset whose files are replaced."""
    if out.exists() and any(out.iterdir()) and not (out / "manifest.json").is_file():
        raise DataError(f"{out} is not empty and holds no dataset (no manifest.json); choose an empty or new folder.")
    for name in OWNED:
        path = out / name
        if path.is_dir():
            shutil.rmtree(path)
        elif path.exists():
            path.unlink()
    out.mkdir(parents=True, exist_ok=True)


def build_dataset(cfg: BuildConfig) -> dict:
    """Write the dataset into cfg.out; returns the manifest (settings and counts)."""
    if not 0 < cfg.heldout_fraction < 1:
        raise DataError("The held-out fraction must be between 0 and 1.")
    cfg = dataclasses.replace(cfg, out=Path(cfg.out), cache_dir=Path(cfg.cache_dir or default_cache_dir()))
    _prepare(cfg.out)
    splits: dict[str, list[dict]] = {"train": [], "heldout": []}

    def n_heldout(n: int) -> int:
        return round(n * cfg.heldout_fraction)

    train_scenes = scene_specs(cfg.seed, "train", cfg.scenes, variety=cfg.variety, workers=cfg.workers)
    heldout_scenes = scene_specs(cfg.seed, "heldout", n_heldout(cfg.scenes), frozenset(train_scenes),
                                 variety=cfg.variety, workers=cfg.workers)  # fmt: skip
    splits["train"] += scene_records(cfg, "train", train_scenes)
    splits["heldout"] += scene_records(cfg, "heldout", heldout_scenes)
    if cfg.photos:
        splits["train"] += photo_records(cfg, "train")
        splits["heldout"] += photo_records(cfg, "heldout")

    dialogues = {"train": [], "heldout": []}
    if cfg.chitchat or cfg.sounds:
        dialogues["train"], dialogues["heldout"] = chitchat.split_dialogues(
            chitchat.load_dialogues(), cfg.heldout_fraction
        )
    if cfg.sounds:
        train_plans = audio_qa.sound_plans(f"{cfg.seed}/sound/train", cfg.sounds, dialogues["train"])
        said = frozenset(c.text for p in train_plans for c in p.clips if c.text)
        heldout_plans = audio_qa.sound_plans(
            f"{cfg.seed}/sound/heldout", n_heldout(cfg.sounds), dialogues["heldout"], avoid_texts=said
        )
        splits["train"] += sound_records(cfg, "train", train_plans)
        splits["heldout"] += sound_records(cfg, "heldout", heldout_plans)
    if cfg.chitchat:
        for split in splits:
            splits[split] += chitchat_records(dialogues[split], split)

    settings = {k: v for k, v in dataclasses.asdict(cfg).items() if k not in ("out", "cache_dir", "workers")}
    if not cfg.variety:
        del settings["variety"]  # the manifests of plain builds stay what they were
    manifest = {"settings": settings, "missing_photos": photos.missing_photos() if cfg.photos else [], "counts": {}}
    for split, records in splits.items():
        random.Random(f"{cfg.seed}/order/{split}").shuffle(records)  # sources mixed: any prefix is a sample
        write_jsonl(cfg.out / f"{split}.jsonl", records)
        manifest["counts"][split] = dict(sorted(Counter(r["qtype"] for r in records).items()))
        manifest["counts"][split]["total"] = len(records)
    (cfg.out / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")
    return manifest

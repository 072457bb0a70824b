"""A disk cache of what the observation tools report about a dataset's media.

    load_observations(examples, config.observations, Path("data/builtin/observations.json"))

Encoding the training data runs OCR, the face detector, the colour namer and Whisper on every
picture and clip (thousands of them; Whisper alone takes ~0.2 s a clip on two CPU cores). The
first run computes what is missing, with a progress bar, and writes it beside the data; later
runs (resumed training, evaluation, the ablation's six runs) read it back in a second. Entries
are keyed by media content, so a rebuilt dataset reuses what did not change, and by the tool
settings, so a change to them (e.g. `observe.OCR_MIN_SIDE`) recomputes rather than serving
stale text. The results are handed to `engine.observe` / `engine.speech.asr`, whose in-memory
tables `encode_turn` reads first: training and chatting still share one code path.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

from tqdm import tqdm

from engine import observe, preprocess

OBSERVATION_CACHE = "observations.json"  # the cache's name in a dataset folder
CACHE_VERSION = 1
SAVE_EVERY = 500


def _settings() -> str:
    """Everything that changes what the tools say; part of the cache's identity."""
    return (
        f"v{CACHE_VERSION};ocr-min-side={observe.OCR_MIN_SIDE};ocr-min-conf={observe.OCR_MIN_CONFIDENCE};"
        f"color-share={observe.COLOR_MIN_SHARE}"
    )


def _read(path: Path) -> dict:
    """The cache's entries, or an empty table when it is missing, unreadable or for other settings."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return {}
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        print(f"Ignoring the unreadable observation cache {path} ({error}); recomputing it.", file=sys.stderr)
        return {}
    if not isinstance(data, dict) or data.get("settings") != _settings() or not isinstance(data.get("entries"), dict):
        return {}
    return data["entries"]


def _write(path: Path, entries: dict) -> None:
    partial = path.with_suffix(".json.part")
    partial.write_text(json.dumps({"settings": _settings(), "entries": entries}, separators=(",", ":")))
    os.replace(partial, path)


def _count_and_save(computed: int, cache_file: Path | None, entries: dict) -> int:
    """One more computed entry; saved every SAVE_EVERY so an interrupted run keeps most of its work."""
    computed += 1
    if cache_file and computed % SAVE_EVERY == 0:
        _write(cache_file, entries)
    return computed


def load_observations(examples, tools: tuple[str, ...], cache_file: Path | None) -> None:
    """Compute (or read from `cache_file`) the observations of every medium in `examples`.

    `tools` is the model's `observations` (e.g. ("ocr", "faces", "colors", "asr")). Nothing
    is done when it is empty. Without a cache file the results are only kept in memory.
    """
    image_tools = observe.ordered_tools([t for t in tools if t != "asr"])
    images = sorted({p for e in examples for t in e.conversation.turns for p in t.images}) if image_tools else []
    clips = sorted({p for e in examples for t in e.conversation.turns for p in t.audio}) if "asr" in tools else []
    if not images and not clips:
        return
    entries = _read(cache_file) if cache_file else {}
    computed = 0
    image_key = ",".join(image_tools)
    for path in tqdm(images, desc="observing images", file=sys.stderr, leave=False):
        picture = preprocess.read_image(path)
        digest = observe.image_digest(picture)
        key = f"image:{image_key}:{digest}"
        found = entries.get(key)
        if isinstance(found, dict):
            result = observe.ImageObservations(
                tuple(found.get("text", ())), found.get("faces"), tuple(found.get("colors", ())), image_tools
            )
        else:
            result = observe.observe_image(picture, image_tools, digest)
            entries[key] = {"text": list(result.text), "faces": result.faces, "colors": list(result.colors)}
            computed = _count_and_save(computed, cache_file, entries)
        observe.remember(digest, result)
    if clips:
        from engine.speech import asr

        for path in tqdm(clips, desc="transcribing clips", file=sys.stderr, leave=False):
            digest = asr.clip_digest(path)
            key = f"audio:asr:{digest}"
            text = entries.get(key)
            if not isinstance(text, str):
                text = entries[key] = asr.hear(path)
                computed = _count_and_save(computed, cache_file, entries)
            asr.remember_heard(digest, text)
    if cache_file and computed:
        _write(cache_file, entries)
        print(f"Observed {computed} new media files; cached in {cache_file}", file=sys.stderr)

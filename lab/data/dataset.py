"""The on-disk dataset: one JSON conversation per line, media files beside it, and its loader.

    examples = load_dataset("data/builtin", "train")     # list[Example], media checked
    examples[0].conversation                             # engine.types.Conversation, absolute paths
    examples[0].qtype, examples[0].answer                # "color", "It is red."

A line of `train.jsonl` / `heldout.jsonl`:

    {"id": "scene-train-00017-0", "system": "", "turns": [
        {"role": "user", "text": "What color is the star?", "images": ["images/scenes/train/00017.png"], "audio": []},
        {"role": "assistant", "text": "It is red.", "images": [], "audio": []}],
     "qtype": "color", "answer": "It is red.", "source": "scene", "meta": {...}}

Media paths are relative to the dataset folder. Anything wrong with the folder, a line or a
media file raises `DataError` naming the file (and line) to fix.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from engine.types import Conversation, InputError, Turn

SPLITS = ("train", "heldout")
MAGIC = {
    ".png": (b"\x89PNG\r\n\x1a\n", "PNG"),
    ".jpg": (b"\xff\xd8\xff", "JPEG"),
    ".jpeg": (b"\xff\xd8\xff", "JPEG"),
    ".wav": (b"RIFF", "WAV"),
}
BUILD_HINT = "Rebuild it with `python -m lab.data --out DIR`."


class DataError(InputError):
    """A dataset folder, one of its lines or one of its media files is missing or unusable."""


@dataclass
class Example:
    """One conversation of the dataset; the last assistant turn is the answer to evaluate."""

    id: str
    conversation: Conversation
    qtype: str  # "color", "shape", "count", ..., "chitchat", "spoken", "photo", ...
    answer: str
    source: str = ""  # "scene" | "photo" | "sound" | "chitchat"
    meta: dict = field(default_factory=dict)


def record(id: str, turns: list[dict], qtype: str, source: str, meta: dict | None = None, system: str = "") -> dict:
    """A jsonl record; `turns` are {"role", "text", "images", "audio"} dicts with relative paths."""
    full = [
        {
            "role": t["role"],
            "text": t.get("text", ""),
            "images": list(t.get("images", ())),
            "audio": list(t.get("audio", ())),
        }
        for t in turns
    ]
    answer = next((t["text"] for t in reversed(full) if t["role"] == "assistant"), "")
    return {
        "id": id,
        "system": system,
        "turns": full,
        "qtype": qtype,
        "answer": answer,
        "source": source,
        "meta": meta or {},
    }


def write_jsonl(path: Path, records: list[dict]) -> None:
    """Write records one per line (stable key order, UTF-8), atomically."""
    partial = path.with_suffix(".jsonl.part")
    with open(partial, "w", encoding="utf-8", newline="\n") as out:
        for rec in records:
            out.write(json.dumps(rec, ensure_ascii=False, separators=(",", ":")) + "\n")
    partial.replace(path)


def check_media(path: Path, where: str) -> None:
    """Raise DataError if a media file is missing, empty, or not what its name says."""
    try:
        with open(path, "rb") as handle:
            head = handle.read(12)
    except FileNotFoundError:
        raise DataError(f"Media file {path} is missing ({where} refers to it). {BUILD_HINT}") from None
    except OSError as error:
        raise DataError(f"Media file {path} cannot be read ({error.strerror or error}; {where}).") from None
    if not head:
        raise DataError(f"Media file {path} is empty ({where} refers to it). {BUILD_HINT}")
    magic, kind = MAGIC.get(path.suffix.lower(), (b"", ""))
    if not head.startswith(magic) or (kind == "WAV" and head[8:12] != b"WAVE"):
        raise DataError(f"Media file {path} is corrupt: it is not a {kind} file ({where}). {BUILD_HINT}")


def _media(root: Path, value, where: str, checked: set) -> Path:
    if not isinstance(value, str) or not value:
        raise DataError(f"{where}: media paths must be non-empty strings, got {value!r}.")
    path = (root / value).resolve()
    if not path.is_relative_to(root):
        raise DataError(f"{where}: media path {value!r} points outside the dataset folder {root}.")
    if path not in checked:
        check_media(path, where)
        checked.add(path)
    return path


def parse_line(root: Path, line: str, where: str, checked: set, check: bool = True) -> Example:
    try:
        data = json.loads(line)
    except json.JSONDecodeError as error:
        raise DataError(f"{where} is not valid JSON ({error.msg} at column {error.colno}). {BUILD_HINT}") from None
    if not isinstance(data, dict) or not isinstance(data.get("turns"), list) or not data["turns"]:
        raise DataError(f"{where} is not a conversation: expected an object with a non-empty 'turns' list.")
    name = f"{where} (example {data.get('id', '?')})"
    turns = []
    for turn in data["turns"]:
        if not isinstance(turn, dict) or turn.get("role") not in ("user", "assistant"):
            raise DataError(f"{name}: every turn needs a role 'user' or 'assistant', got {turn!r:.80}.")
        images, audio = turn.get("images") or [], turn.get("audio") or []
        if check:
            images = [_media(root, value, name, checked) for value in images]
            audio = [_media(root, value, name, checked) for value in audio]
        else:
            images, audio = [root / v for v in images], [root / v for v in audio]
        turns.append(Turn(role=turn["role"], text=str(turn.get("text", "")), images=images, audio=audio, created=0.0))
    if turns[-1].role != "assistant":
        raise DataError(f"{name}: the last turn must be the assistant's answer.")
    return Example(
        id=str(data.get("id", "")),
        conversation=Conversation(str(data.get("system", "")), turns),
        qtype=str(data.get("qtype", "")),
        answer=str(data.get("answer", turns[-1].text)),
        source=str(data.get("source", "")),
        meta=data.get("meta") or {},
    )


def load_dataset(directory: str | Path, split: str, check: bool = True) -> list[Example]:
    """The examples of one split ("train" or "heldout") of a dataset folder.

    Every media file is checked once (present, non-empty, PNG/JPEG/WAV header as named);
    `check=False` skips that. Raises `DataError` naming the folder, file and line at fault.
    """
    if split not in SPLITS:
        raise DataError(f"Unknown split {split!r}: use one of {', '.join(SPLITS)}.")
    root = Path(directory).resolve()
    if not root.is_dir():
        raise DataError(
            f"Dataset folder {directory} does not exist. Build one with `python -m lab.data --out {directory}`."
        )
    path = root / f"{split}.jsonl"
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise DataError(
            f"{path} is missing: a dataset folder needs train.jsonl and heldout.jsonl. {BUILD_HINT}"
        ) from None
    except UnicodeDecodeError as error:
        raise DataError(f"{path} is corrupt (not UTF-8 text: {error.reason}). {BUILD_HINT}") from None
    checked: set = set()
    examples = [
        parse_line(root, line, f"{path}, line {number}", checked, check)
        for number, line in enumerate(text.splitlines(), 1)
        if line.strip()
    ]
    if not examples:
        raise DataError(f"{path} holds no examples. {BUILD_HINT}")
    return examples

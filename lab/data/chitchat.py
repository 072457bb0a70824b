"""Chit-chat: the English dialogues of `chatterbot-corpus`, split into train and held-out.

    dialogues = load_dialogues()                    # Dialogue(category, lines), duplicates removed
    train, heldout = split_dialogues(dialogues, 0.1)

A dialogue's lines alternate user / assistant, starting with the user; a last user line with
no reply is dropped. The split is by dialogue and depends on nothing but the text: a
dialogue goes to held-out when the hash of its normalised first line falls below the
fraction. Dialogues that open with the same line ("Hi, How is it going?" has six different
replies) therefore always land on the same side, so no held-out prompt is seen in training.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from pathlib import Path

from engine.types import InputError
from lab.data.photos import package_dir

PACKAGE = "chatterbot_corpus"  # pip install chatterbot-corpus


class CorpusMissing(InputError):
    """The chit-chat corpus package is not installed."""


@dataclass(frozen=True)
class Dialogue:
    category: str  # the YAML file's name, e.g. "greetings"
    lines: tuple[str, ...]  # user, assistant, user, assistant, ... (even length, at least 2)

    @property
    def pairs(self) -> list[tuple[str, str]]:
        return list(zip(self.lines[::2], self.lines[1::2]))


def corpus_dir(language: str = "english") -> Path:
    root = package_dir(PACKAGE)
    folder = root / "data" / language if root else None
    if folder is None or not folder.is_dir():
        raise CorpusMissing(
            f"The chit-chat corpus is not installed ({PACKAGE} data for {language!r} not found). "
            "Install it with: pip install chatterbot-corpus==1.3.3"
        )
    return folder


def _clean(value) -> str | None:
    if isinstance(value, bool) or not isinstance(value, (str, int, float)):
        return None  # YAML oddities (a broken entry parsed as a mapping, yes/no read as booleans)
    text = re.sub(r"\s+", " ", str(value)).strip()
    return text or None


def load_dialogues(folder: Path | None = None) -> list[Dialogue]:
    """Every usable dialogue of the corpus folder, in file order, exact duplicates removed."""
    import yaml

    folder = Path(folder) if folder else corpus_dir()
    seen, dialogues = set(), []
    for path in sorted(folder.glob("*.yml")):
        try:
            data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        except yaml.YAMLError as error:
            raise InputError(f"The chit-chat file {path} is not valid YAML: {error}") from error
        for entry in data.get("conversations") or []:
            if not isinstance(entry, list):
                continue
            lines = [_clean(value) for value in entry]
            if any(line is None for line in lines):
                continue
            lines = lines[: len(lines) // 2 * 2]  # a last user line without a reply is dropped
            if len(lines) < 2 or tuple(lines) in seen:
                continue
            seen.add(tuple(lines))
            dialogues.append(Dialogue(category=path.stem, lines=tuple(lines)))
    return dialogues


def normalise(text: str) -> str:
    return " ".join(re.findall(r"[a-z0-9']+", text.lower()))


def heldout_score(dialogue: Dialogue) -> float:
    """A number in [0, 1) fixed by the dialogue's first line: the split compares it to the fraction."""
    digest = hashlib.sha256(normalise(dialogue.lines[0]).encode()).hexdigest()
    return int(digest[:12], 16) / 16**12


def split_dialogues(dialogues: list[Dialogue], heldout_fraction: float = 0.1) -> tuple[list[Dialogue], list[Dialogue]]:
    """(train, held-out) by the hash of each dialogue's first line; order is kept."""
    train = [d for d in dialogues if heldout_score(d) >= heldout_fraction]
    heldout = [d for d in dialogues if heldout_score(d) < heldout_fraction]
    return train, heldout

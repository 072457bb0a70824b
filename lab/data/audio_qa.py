"""Conversations about sounds, and dialogues where the user speaks instead of typing.

    plans = sound_plans("0/sound/train", count=500, dialogues=train_dialogues)
    plan.qtype, plan.turns      # "loudness", [UserTurn("Is it loud?", clips=(clip,)), "It is loud."]
    plan.clips                  # every Clip the conversation plays, to render

Question types: `sound` (speech, music, a tone, noise or silence), `loudness`, `transcript`
("What did I say?" -> "You said: ..."), `pitch` (a high or a low tone), and `spoken`: a
chit-chat dialogue whose user turns are audio only, answered like the typed dialogue.
"""

from __future__ import annotations

import dataclasses
import random
from dataclasses import dataclass, field

from lab.data.chitchat import Dialogue
from lab.data.questions import plural
from lab.data.sounds import LEVELS, Clip

VOICES = ("en-us", "en-gb", "en-gb-scotland", "en-029", "en-gb-x-rp")
VARIANTS = ("", "+f1", "+f2", "+f3", "+f4", "+m1", "+m2", "+m3", "+m4", "+m7", "+klatt")
LOW_NOTES = ("C3", "D3", "E3", "F3", "G3", "A3", "B3")
HIGH_NOTES = ("C5", "D5", "E5", "F5", "G5", "A5", "B5", "C6")
SCALE = ("C4", "D4", "E4", "F4", "G4", "A4", "B4", "C5", "D5", "E5")
TRIADS = (
    ("C4", "E4", "G4"),
    ("F4", "A4", "C5"),
    ("G3", "B3", "D4"),
    ("A3", "C4", "E4"),
    ("D4", "F4", "A4"),
    ("E4", "G4", "B4"),
    ("C4", "E4", "G4", "C5"),
    ("A3", "C#4", "E4"),
    ("D4", "F#4", "A4"),
)
TIMBRES = ("sine", "organ", "pluck", "square")
# The share of clips of each kind; "spoken" clips carry chit-chat lines, "speech" clips sentences.
MIX = {"spoken": 0.35, "speech": 0.2, "music": 0.15, "tone": 0.12, "noise": 0.1, "silence": 0.08}
MAX_SPOKEN_WORDS = 12

KIND_ANSWERS = {
    "speech": "It is speech.",
    "music": "It is music.",
    "tone": "It is a tone.",
    "noise": "It is noise.",
    "silence": "It is silence.",
}
QUESTIONS = {
    "sound": (
        "Is that speech or music?",
        "What kind of sound is this?",
        "What is this sound?",
        "Is this speech, music or noise?",
        "What do you hear?",
    ),
    "loudness": ("Is it loud?", "Is this loud or quiet?", "How loud is this?", "Is the sound loud or quiet?"),
    "transcript": ("What did I say?", "What did you hear me say?", "Transcribe this.", "What are the words?"),
    "pitch": ("Is it a high or a low tone?", "Is the pitch high or low?", "Is this note high or low?"),
}

NOUNS = (
    "cat",
    "dog",
    "ball",
    "book",
    "car",
    "house",
    "tree",
    "bird",
    "phone",
    "cup",
    "key",
    "chair",
    "door",
    "box",
    "apple",
    "lamp",
    "window",
    "bag",
    "hat",
    "train",
)
ADJECTIVES = ("big", "small", "red", "blue", "green", "new", "old", "warm", "cold", "heavy", "clean", "open")
VERBS = ("open", "close", "find", "bring", "take", "clean", "move", "paint", "show me", "look at")
NUMBER_WORDS = ("two", "three", "four", "five", "six")
PLACES = ("kitchen", "garden", "car", "office", "park", "bedroom")


@dataclass
class UserTurn:
    text: str = ""
    clips: tuple[Clip, ...] = ()


@dataclass
class SoundPlan:
    """One conversation: alternating UserTurn and assistant text, plus labels for the jsonl."""

    qtype: str
    turns: list = field(default_factory=list)
    meta: dict = field(default_factory=dict)

    @property
    def answer(self) -> str:
        return self.turns[-1]

    @property
    def clips(self) -> list[Clip]:
        return [clip for turn in self.turns if isinstance(turn, UserTurn) for clip in turn.clips]


def sentence(rng: random.Random) -> str:
    """A short everyday sentence from a small grammar (for "what did I say?")."""
    noun, other = rng.sample(NOUNS, 2)
    forms = (
        lambda: f"The {noun} is {rng.choice(ADJECTIVES)}.",
        lambda: f"Please {rng.choice(VERBS)} the {noun}.",
        lambda: f"Where is my {noun}?",
        lambda: f"I see {rng.choice(NUMBER_WORDS)} {plural(noun)}.",
        lambda: f"The {noun} is next to the {other}.",
        lambda: f"Put the {noun} in the {rng.choice(PLACES)}.",
        lambda: f"I like your {rng.choice(ADJECTIVES)} {noun}.",
    )
    return rng.choice(forms)()


def _speech(rng: random.Random, text: str, level: str) -> Clip:
    noisy, wet = rng.random() < 0.35, rng.random() < 0.3
    return Clip(
        kind="speech",
        level=level,
        text=text,
        voice=rng.choice(VOICES) + rng.choice(VARIANTS),
        speed=rng.randrange(130, 201, 10),
        pitch=rng.randrange(25, 76, 5),
        snr_db=float(rng.choice((5, 10, 15, 20))) if noisy else None,
        reverb=rng.randrange(20, 71, 10) if wet else 0,
        gain_db=round(rng.uniform(*LEVELS[level]), 1),
        seed=rng.randrange(2**31),
    )


def random_clip(rng: random.Random, kind: str, text: str = "") -> Clip:
    """A clip of `kind` with every other choice drawn from `rng`."""
    level = "loud" if rng.random() < 0.6 else "quiet"
    gain = round(rng.uniform(*LEVELS[level]), 1)
    seed = rng.randrange(2**31)
    if kind == "speech":
        return _speech(rng, text, level)
    if kind == "tone":
        notes = (rng.choice(rng.choice((LOW_NOTES, HIGH_NOTES))),)
        return Clip(
            kind="tone",
            level=level,
            seconds=round(rng.uniform(0.6, 2.0), 2),
            notes=notes,
            timbre=rng.choice(("sine", "sine", "organ")),
            gain_db=gain,
            seed=seed,
        )
    if kind == "music":
        if rng.random() < 0.5:
            notes, arrangement, seconds = rng.choice(TRIADS), "chord", rng.uniform(1.0, 2.5)
        else:
            notes, arrangement = tuple(rng.choice(SCALE) for _ in range(rng.randint(4, 8))), "melody"
            seconds = len(notes) * rng.uniform(0.2, 0.35)
        return Clip(
            kind="music",
            level=level,
            seconds=round(seconds, 2),
            notes=notes,
            arrangement=arrangement,
            timbre=rng.choice(TIMBRES),
            reverb=rng.choice((0, 0, 30, 50)),
            gain_db=gain,
            seed=seed,
        )
    if kind == "noise":
        return Clip(
            kind="noise",
            level=level,
            seconds=round(rng.uniform(0.8, 2.5), 2),
            arrangement=rng.choice(("white", "pink", "brown")),
            gain_db=gain,
            seed=seed,
        )
    if kind == "silence":
        return Clip(
            kind="silence",
            level="silent",
            seconds=round(rng.uniform(0.5, 2.5), 2),
            arrangement=rng.choice(("digital", "room")),
            seed=seed,
        )
    raise ValueError(f"Unknown clip kind {kind!r}")


def _answer(qtype: str, clip: Clip) -> str:
    if qtype == "sound":
        return KIND_ANSWERS[clip.kind]
    if qtype == "loudness":
        return f"It is {clip.level}."
    if qtype == "transcript":
        return f"You said: {clip.text}"
    return f"It is a {clip.label()['pitch']} tone."


def clip_conversation(clip: Clip, rng: random.Random) -> SoundPlan:
    """A question about one clip (sometimes two, for speech: the kind, then the words)."""
    qtypes = (
        ["sound", "loudness"]
        + (["transcript", "transcript"] if clip.kind == "speech" else [])
        + (["pitch", "pitch"] if clip.kind == "tone" else [])
    )
    qtype = rng.choice(qtypes)
    turns = [UserTurn(rng.choice(QUESTIONS[qtype]), (clip,)), _answer(qtype, clip)]
    if qtype == "sound" and clip.kind == "speech" and rng.random() < 0.3:
        qtype = "transcript"
        turns += [UserTurn("And what did I say?"), _answer("transcript", clip)]
    return SoundPlan(qtype, turns, {"clips": [clip.label()]})


def spoken_dialogue(dialogue: Dialogue, rng: random.Random) -> SoundPlan:
    """A chit-chat dialogue whose user turns are audio only (each line said by the same voice)."""
    voice = _speech(rng, "", "loud")
    turns, labels = [], []
    for user, assistant in dialogue.pairs:
        clip = dataclasses.replace(voice, text=user, seed=rng.randrange(2**31))
        turns += [UserTurn("", (clip,)), assistant]
        labels.append(clip.label())
    return SoundPlan("spoken", turns, {"clips": labels, "category": dialogue.category})


def speakable(dialogue: Dialogue) -> bool:
    return all(len(user.split()) <= MAX_SPOKEN_WORDS for user, _ in dialogue.pairs) and len(dialogue.pairs) <= 3


def sound_plans(
    stream: str, count: int, dialogues: list[Dialogue], avoid_texts: frozenset = frozenset()
) -> list[SoundPlan]:
    """About `count` clips' worth of conversations, all choices drawn from the string `stream`.

    `dialogues` feed the spoken dialogues (they should come from the same split); sentences
    in `avoid_texts` (the other split's) are not said again, so held-out transcripts are new.
    """
    spoken_pool = [d for d in dialogues if speakable(d)]
    plans, clips = [], 0
    index = 0
    while clips < count:
        rng = random.Random(f"{stream}/{index}")
        index += 1
        kind = rng.choices(list(MIX), list(MIX.values()))[0]
        if kind == "spoken" and spoken_pool:
            plan = spoken_dialogue(rng.choice(spoken_pool), rng)
        else:
            kind = "speech" if kind == "spoken" else kind
            text = ""
            if kind == "speech":
                for _ in range(20):
                    text = sentence(rng)
                    if text not in avoid_texts:
                        break
            plan = clip_conversation(random_clip(rng, kind, text), rng)
        plans.append(plan)
        clips += len(plan.clips)
    return plans

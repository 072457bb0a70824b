"""Sound clips: a labelled spec (`Clip`), its rendering to 16 kHz mono, and an on-disk cache.

    clip = Clip(kind="speech", text="Hello there.", voice="en-gb+f3", speed=160, pitch=50, level="loud")
    paths = render_all([clip, ...], cache_dir, workers=2)   # one 16-bit WAV per clip, cached

Speech is made by espeak-ng (voice, speed, pitch), converted and reverberated by sox, with
background noise mixed in at a signal-to-noise ratio; tones, chords, melodies, noise and
silence are synthesised with numpy. Every random choice is part of the spec (a `seed` for
the noise), so a clip renders to the same bytes every time. Rendered clips are cached by the
hash of their spec, so a rebuild only renders what is new. Needs `espeak-ng` and `sox`
(apt-get install espeak-ng sox libsox-fmt-all).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import wave
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from engine.types import EngineError

RATE = 16000
RENDER_VERSION = 1  # bump when rendering changes, so cached clips are made again
KINDS = ("speech", "music", "tone", "noise", "silence")
LEVELS = {"loud": (-3.0, -1.0), "quiet": (-38.0, -30.0)}  # peak level range in dBFS
FAINT_DB = -75.0  # RMS of the room tone a "silent" clip may carry
NOTE_STEPS = {"C": -9, "D": -7, "E": -5, "F": -4, "G": -2, "A": 0, "B": 2}


class ToolMissing(EngineError):
    """espeak-ng or sox is not installed, or failed."""


@dataclass(frozen=True)
class Clip:
    kind: str  # one of KINDS
    level: str = "loud"  # "loud" | "quiet" | "silent" (only for silence)
    seconds: float = 1.0  # length (speech: as long as it takes to say)
    text: str = ""  # speech: the words said
    voice: str = ""  # speech: espeak-ng voice, e.g. "en-us+f3"
    speed: int = 160  # speech: words per minute
    pitch: int = 50  # speech: espeak-ng pitch, 0..99
    notes: tuple[str, ...] = ()  # tone: one note; music: a chord's notes or a melody, e.g. ("C4", "E4", "G4")
    arrangement: str = ""  # music: "chord" | "melody"; noise: "white" | "pink" | "brown"
    timbre: str = "sine"  # tone and music: "sine" | "organ" | "pluck" | "square"
    snr_db: float | None = None  # background noise this far below the signal; None = clean
    reverb: int = 0  # sox reverberance 0..100; 0 = dry
    gain_db: float = -2.0  # peak level in dBFS (ignored for silence)
    seed: int = 0  # noise samples

    def key(self) -> str:
        spec = json.dumps([RENDER_VERSION, dataclasses.asdict(self)], sort_keys=True)
        return hashlib.sha256(spec.encode()).hexdigest()[:24]

    def label(self) -> dict:
        """What a listener can be asked about: kind, loudness and the spoken words."""
        label = {"kind": self.kind, "loudness": self.level}
        if self.text:
            label["text"] = self.text
        if self.kind == "tone":
            label["pitch"] = "high" if note_hz(self.notes[0]) > 400 else "low"
        if self.kind in ("music", "noise"):
            label["arrangement"] = self.arrangement
        return label


def note_hz(name: str) -> float:
    """'A4' -> 440.0; sharps as 'C#4'."""
    letter, rest = name[0], name[1:]
    sharp = rest.startswith("#")
    octave = int(rest[1:] if sharp else rest)
    return 440.0 * 2 ** ((NOTE_STEPS[letter] + sharp + 12 * (octave - 4)) / 12)


# ----------------------------------------------------------------------------- wav files


def write_wav(path: Path, samples: np.ndarray, rate: int = RATE) -> None:
    pcm = np.clip(np.round(samples * 32767), -32768, 32767).astype("<i2")
    with wave.open(str(path), "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(rate)
        out.writeframes(pcm.tobytes())


def read_wav(path: Path) -> np.ndarray:
    """A 16-bit mono WAV -> float32 samples in [-1, 1]."""
    with wave.open(str(path), "rb") as clip:
        if clip.getsampwidth() != 2 or clip.getnchannels() != 1:
            raise ValueError(f"{path} is not 16-bit mono")
        return np.frombuffer(clip.readframes(clip.getnframes()), "<i2").astype(np.float32) / 32768


def rms_db(samples: np.ndarray) -> float:
    return 20 * np.log10(max(float(np.sqrt(np.mean(np.square(samples, dtype=np.float64)))), 1e-9))


# ----------------------------------------------------------------------------- synthesis


def _run(*args: str) -> None:
    if shutil.which(args[0]) is None:
        raise ToolMissing(
            f"{args[0]} is not installed; the sound data need it (apt-get install espeak-ng sox libsox-fmt-all)."
        )
    result = subprocess.run(args, capture_output=True, timeout=120)
    if result.returncode != 0:
        raise ToolMissing(f"{' '.join(args[:3])} ... failed: {result.stderr.decode(errors='replace').strip()}")


def _speech(clip: Clip, tmp: Path) -> np.ndarray:
    (tmp / "text.txt").write_text(clip.text, encoding="utf-8")
    _run(
        "espeak-ng",
        "-v",
        clip.voice,
        "-s",
        str(clip.speed),
        "-p",
        str(clip.pitch),
        "-f",
        str(tmp / "text.txt"),
        "-w",
        str(tmp / "espeak.wav"),
    )
    effects = ["pad", "0", "0.3", "reverb", str(clip.reverb)] if clip.reverb else []  # room for the tail
    _run(
        "sox",
        "-D",
        "-R",
        str(tmp / "espeak.wav"),
        "-r",
        str(RATE),
        "-c",
        "1",
        "-b",
        "16",
        str(tmp / "speech.wav"),
        *effects,
    )
    return read_wav(tmp / "speech.wav")


def _envelope(n: int, attack: float = 0.01, release: float = 0.05, decay: float = 0.0) -> np.ndarray:
    t = np.arange(n) / RATE
    env = np.minimum(1.0, t / attack) * np.minimum(1.0, (n / RATE - t) / release)
    return env * np.exp(-decay * t) if decay else env


def _voice(hz: float, n: int, timbre: str) -> np.ndarray:
    """One note of `n` samples in a timbre, peak about 1."""
    t = np.arange(n) / RATE
    if timbre == "sine":
        partials = [(1, 1.0)]
    elif timbre == "organ":
        partials = [(k, 1 / k) for k in range(1, 5)]
    elif timbre == "square":
        partials = [(k, 1 / k) for k in range(1, 10, 2)]
    else:  # pluck
        partials = [(k, 0.8**k) for k in range(1, 7)]
    wave_ = sum(a * np.sin(2 * np.pi * hz * k * t) for k, a in partials if hz * k < RATE / 2)
    decay = 3.0 if timbre == "pluck" else 0.0
    return wave_ * _envelope(n, decay=decay) / sum(a for _, a in partials)


def _music(clip: Clip) -> np.ndarray:
    n = round(clip.seconds * RATE)
    if clip.kind == "tone" or clip.arrangement == "chord":
        return sum(_voice(note_hz(name), n, clip.timbre) for name in clip.notes) / len(clip.notes)
    step = n // len(clip.notes)  # a melody: the notes one after another
    return np.concatenate([_voice(note_hz(name), step, clip.timbre) for name in clip.notes])


def _noise(color: str, n: int, rng: np.random.Generator) -> np.ndarray:
    white = rng.standard_normal(n)
    if color == "white":
        return white
    spectrum = np.fft.rfft(white)
    freqs = np.maximum(np.fft.rfftfreq(n, 1 / RATE), 20.0)
    shaped = np.fft.irfft(spectrum / (np.sqrt(freqs) if color == "pink" else freqs), n)
    return shaped / (np.std(shaped) + 1e-12)


def _reverb(samples: np.ndarray, amount: int, tmp: Path) -> np.ndarray:
    write_wav(tmp / "dry.wav", samples * 0.5)
    _run("sox", "-D", "-R", str(tmp / "dry.wav"), str(tmp / "wet.wav"), "pad", "0", "0.3", "reverb", str(amount))
    return read_wav(tmp / "wet.wav") * 2


def render(clip: Clip) -> np.ndarray:
    """The clip as float32 samples at 16 kHz, in [-1, 1]."""
    rng = np.random.default_rng(clip.seed)
    with tempfile.TemporaryDirectory(prefix="clip-") as name:
        tmp = Path(name)
        if clip.kind == "speech":
            signal = _speech(clip, tmp)
        elif clip.kind in ("tone", "music"):
            signal = _music(clip)
            if clip.reverb:
                signal = _reverb(signal, clip.reverb, tmp)
        elif clip.kind == "noise":
            signal = _noise(clip.arrangement, round(clip.seconds * RATE), rng) * _envelope(round(clip.seconds * RATE))
        elif clip.kind == "silence":
            n = round(clip.seconds * RATE)
            faint = clip.arrangement == "room"  # a quiet room rather than digital zeros
            return (_noise("pink", n, rng) * 10 ** (FAINT_DB / 20) if faint else np.zeros(n)).astype(np.float32)
        else:
            raise ValueError(f"Unknown clip kind {clip.kind!r}")
    signal = np.asarray(signal, dtype=np.float64)
    if clip.snr_db is not None:
        noise = _noise("pink", len(signal), rng)
        noise *= np.sqrt(np.mean(signal**2)) / 10 ** (clip.snr_db / 20)
        signal = signal + noise
    peak = np.max(np.abs(signal)) or 1.0
    return (signal / peak * 10 ** (clip.gain_db / 20)).astype(np.float32)


# ----------------------------------------------------------------------------- cache


def default_cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "multimodal-chat" / "sounds"


def render_cached(clip: Clip, cache_dir: Path) -> Path:
    """The clip's WAV in the cache, rendered first if absent (written atomically)."""
    key = clip.key()
    path = Path(cache_dir) / key[:2] / f"{key}.wav"
    if path.is_file():
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_suffix(f".{os.getpid()}.part")
    write_wav(partial, render(clip))
    os.replace(partial, path)
    return path


def render_all(clips: list[Clip], cache_dir: Path, workers: int = 2, desc: str = "sounds") -> list[Path]:
    """Cached WAV paths for `clips`, in order; missing ones rendered by `workers` processes."""
    from tqdm import tqdm

    cache_dir = Path(cache_dir)
    todo = list(
        {
            clip.key(): clip for clip in clips if not (cache_dir / clip.key()[:2] / f"{clip.key()}.wav").is_file()
        }.values()
    )
    if todo:
        with tqdm(total=len(todo), desc=desc, file=sys.stderr, leave=False) as progress:
            if workers > 1 and len(todo) > 8:
                with ProcessPoolExecutor(workers) as pool:
                    for _ in pool.map(render_cached, todo, [cache_dir] * len(todo), chunksize=8):
                        progress.update(1)
            else:
                for clip in todo:
                    render_cached(clip, cache_dir)
                    progress.update(1)
    return [cache_dir / clip.key()[:2] / f"{clip.key()}.wav" for clip in clips]

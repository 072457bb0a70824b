"""The SmolLM2 backend on sounds our generator never made: real recordings, and clips synthesised
by sox (another synthesiser than lab.data.sounds' numpy one), with and without our audio encoder.

    python -m lab.hearing_eval            # ~3 min on 2 CPU cores
    python -m lab.hearing_eval --no-hearing

Real recordings are those shipped inside installed packages: gradio's media assets (two speeches
by Cate Blanchett, Heath Ledger's, a saxophone, the Star Wars cantina band) and CPython's
plucked-string test file when present. The sox clips: sine, square and triangle tones, high and
low; white, pink and brown noise; plucked chords; silence. Each is asked "What kind of sound is
this?" (passes when the reply names its kind: speech, music, tone, noise or silence; a tone may
be called music), sox tones also "Is it a high or a low tone?" and loud/quiet clips "Is it loud
or quiet?".
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
import tempfile
from pathlib import Path

from tqdm import tqdm

from engine.types import Conversation, GenerationConfig, Turn

GREEDY = GenerationConfig(temperature=0, max_new_tokens=40)
KIND_WORDS = {
    "speech": ("speech", "speaking", "talking", "voice"),
    "music": ("music", "melody", "chord"),
    "tone": ("tone", "beep", "note"),
    "noise": ("noise",),
    "silence": ("silence", "silent", "nothing"),
}


def real_recordings() -> list[tuple[str, Path, str]]:
    """(name, path, kind) for the recordings inside installed packages."""
    import gradio

    media = Path(gradio.__file__).parent / "media_assets" / "audio"
    found = [(n, media / f, k) for n, f, k in (
        ("cate_blanch", "cate_blanch.mp3", "speech"), ("cate_blanch_2", "cate_blanch_2.mp3", "speech"),
        ("heath_ledger", "heath_ledger.mp3", "speech"), ("sax", "sax.wav", "music"),
        ("cantina", "cantina.wav", "music"))]  # fmt: skip
    pluck = Path(sys.base_prefix) / "lib" / f"python{sys.version_info.major}.{sys.version_info.minor}"
    found.append(("pluck", pluck / "test" / "audiodata" / "pluck-pcm32.wav", "music"))
    return [(n, p, k) for n, p, k in found if p.is_file()]


def sox_clips(folder: Path) -> list[tuple[str, Path, str, dict]]:
    """(name, path, kind, {"pitch": ..., "level": ...}) made by sox's own synthesiser."""
    specs = [
        ("sine 1760 Hz", ["synth", "1.5", "sine", "1760"], "tone", {"pitch": "high"}),
        ("square 180 Hz", ["synth", "1.2", "square", "180"], "tone", {"pitch": "low"}),
        ("triangle 1300 Hz", ["synth", "1", "triangle", "1300"], "tone", {"pitch": "high"}),
        ("sine 150 Hz", ["synth", "2", "sine", "150"], "tone", {"pitch": "low"}),
        ("white noise", ["synth", "2", "whitenoise"], "noise", {"level": "loud"}),
        ("pink noise, quiet", ["synth", "1.5", "pinknoise", "gain", "-30"], "noise", {"level": "quiet"}),
        ("brown noise", ["synth", "2.5", "brownnoise"], "noise", {}),
        ("plucked C major", ["synth", "2", "pluck", "C4", "pluck", "E4", "pluck", "G4"], "music", {}),
        ("plucked A minor", ["synth", "2", "pluck", "A3", "pluck", "C4", "pluck", "E4"], "music", {}),
        ("silence", ["trim", "0", "2"], "silence", {}),
    ]
    clips = []
    for index, (name, effect, kind, labels) in enumerate(specs):
        path = folder / f"sox-{index}.wav"
        subprocess.run(["sox", "-n", "-r", "16000", "-c", "1", "-b", "16", str(path), *effect], check=True)
        clips.append((name, path, kind, labels))
    return clips


def said_kind(text: str) -> set[str]:
    low = text.lower()
    return {k for k, words in KIND_WORDS.items() if any(re.search(rf"\b{w}", low) for w in words)}


def main(argv: list[str] | None = None) -> int:
    from engine.backends.lm import LMBackend
    from engine.speech.asr import hear

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--no-hearing", action="store_true", help="the transcript alone, no audio tokens")
    parser.add_argument("--adapters", default=None, help="adapter folder (default: the shipped one)")
    args = parser.parse_args(argv)
    kwargs = {"adapters": args.adapters} if args.adapters else {}
    backend = LMBackend.smollm2("cpu", transcriber=hear, encoders=not args.no_hearing, **kwargs)
    print(f"model: {backend.name}")

    def ask(path: Path, question: str) -> str:
        conversation = Conversation(turns=[Turn(role="user", text=question, audio=[str(path)])])
        return "".join(backend.stream(conversation, GREEDY)).strip()

    with tempfile.TemporaryDirectory() as folder:
        items = [(n, p, k, {}) for n, p, k in real_recordings()] + sox_clips(Path(folder))
        right = {"real": [], "sox": [], "pitch": [], "loudness": []}
        for name, path, kind, labels in tqdm(items, desc="sounds"):
            reply = ask(path, "What kind of sound is this?")
            ok = kind in said_kind(reply) or (kind == "tone" and "music" in said_kind(reply))
            right["sox" if path.name.startswith("sox-") else "real"].append(ok)
            print(f"  {'ok  ' if ok else 'MISS'} {name} ({kind}): {reply[:120]!r}")
            if "pitch" in labels:
                reply = ask(path, "Is it a high or a low tone?")
                right["pitch"].append(
                    labels["pitch"] in reply.lower()
                    and ("low" if labels["pitch"] == "high" else "high") not in reply.lower()
                )
            if "level" in labels:
                reply = ask(path, "Is it loud or quiet?")
                other = "quiet" if labels["level"] == "loud" else "loud"
                right["loudness"].append(labels["level"] in reply.lower() and other not in reply.lower())
    for key, values in right.items():
        if values:
            print(f"{key}: {sum(values)} of {len(values)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

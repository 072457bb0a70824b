"""Train our audio encoder and projector W_a into SmolLM2-135M-Instruct, the LM frozen (issue 19, item 2).

    python -m lab.train_hearing                          # ~20 min on 2 CPU cores: 300 steps of 8
    python -m lab.train_hearing --steps 3 --out /tmp/h   # a smoke run (what CI does)
    python -m lab.train_hearing --device cuda --batch 32 --steps 1500

The recognizer (Whisper tiny.en) gives the LM the words of a recording, and nothing about a
recording without words: music, a tone, noise and silence all reach it as "(no speech)". The
built-in model's audio encoder (stage 1, trained from scratch on lab.data.sounds) hears what kind
of sound it is, how loud and, for a tone, how high; here it is fine-tuned at a tenth of the rate
with a fresh projector through SmolLM2 with the notes adapters merged (every LM weight frozen),
on clips of lab.data.audio_qa (espeak-ng speech in many voices, with noise and reverb; chords
and melodies of four timbres; tones; white, pink and brown noise; silence), some of them
repeated to the length of a real recording, each with one question answered from its spec. The
prompt holds what the app writes: a clip with words is told by them ("[Recording 1 ... says:
<words>]", no audio tokens: the recognizer is more reliable on speech than a small encoder
trained on espeak-ng); a clip without words is its mark (where its audio tokens go), then
"[Recording 1 ... says: (no speech)]".

Writes hearing.safetensors + hearing.json into --out (beside the notes adapters), a loss curve
in --runs, a resumable state every 50 steps: lab.train_perception.
"""

from __future__ import annotations

import argparse
import random

import numpy as np
import torch

from engine.backends.lm import HEARD_NOTE, NO_SPEECH
from engine.llm.lm import SMOLLM2_SHA256
from engine.llm.perception import HearingConfig
from engine.llm.tokenizer import AUDIO_MARK
from engine.preprocess import log_mel
from lab.train_perception import Example, add_arguments, frozen_lm, train

KIND_SHARE = {"speech": 0.3, "music": 0.25, "tone": 0.15, "noise": 0.15, "silence": 0.15}
LONG = 0.25  # share of clips repeated to 4-12 s, the length of what people record


def hearing_example(rng: random.Random, config: HearingConfig) -> Example:
    """One clip of lab.data.audio_qa's kinds with one question about it, answered from its spec."""
    from lab.data.audio_qa import QUESTIONS, _answer, random_clip, sentence
    from lab.data.sounds import render

    kind = rng.choices(list(KIND_SHARE), weights=list(KIND_SHARE.values()))[0]
    clip = random_clip(rng, kind, text=sentence(rng) if kind == "speech" else "")
    samples = render(clip)
    if rng.random() < LONG:
        samples = np.tile(samples, max(1, round(rng.uniform(4.0, 12.0) * config.sample_rate / len(samples))))
    qtypes = ["sound", "sound", "loudness"] + (["transcript"] if kind == "speech" else [])
    qtypes += ["pitch", "pitch"] if kind == "tone" else []
    qtype = rng.choice(qtypes)
    mel = log_mel(torch.from_numpy(samples), config.sample_rate, config.n_mels, config.hop_length)
    question = rng.choice(QUESTIONS[qtype])
    if kind == "speech":  # told by its words, as the app does: no audio tokens
        note = HEARD_NOTE.format(index=1, heard=clip.text)
        return Example(messages=[{"role": "user", "content": f"{note}\n{question}"}], answer=_answer(qtype, clip))
    note = AUDIO_MARK + "\n" + HEARD_NOTE.format(index=1, heard=NO_SPEECH)
    return Example(
        messages=[{"role": "user", "content": f"{note}\n{question}"}],
        answer=_answer(qtype, clip),
        audio=[mel],
        counts=[config.tokens(mel.shape[-1])],
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_arguments(parser, steps=300, runs="hearing")
    args = parser.parse_args(argv)
    lm = frozen_lm(args)
    config = HearingConfig(d_model=lm.model.config.d_model, base_sha256=SMOLLM2_SHA256)
    return train(args, lm, config, lambda rng: hearing_example(rng, config))


if __name__ == "__main__":
    raise SystemExit(main())

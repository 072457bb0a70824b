"""Train our image encoder and projector W_i into SmolLM2-135M-Instruct, the LM frozen (issue 19, item 2).

    python -m lab.train_vision                          # ~30 min on 2 CPU cores: 400 steps of 8
    python -m lab.train_vision --steps 3 --out /tmp/v   # a smoke run (what CI does)
    python -m lab.train_vision --device cuda --batch 32 --steps 2000   # on a GPU (bf16 autocast)

Staged, LLaVA / nanoVLM style. Stage 1 was the built-in model's training: its CNN image encoder
learned, with the scene probe (lab.scene_probe), to hold in each of its 9 tokens the shape and
colour in that third of the picture. Stage 2, here: that encoder (at a tenth of the learning
rate, with the scene probe still on) and a fresh projector into the LM's 576-wide embeddings
learn through SmolLM2 with the notes adapters merged, all of whose weights stay frozen. The data
are varied scenes (lab.data.variety: white, black, coloured, gradient, textured and photo
backgrounds, any canvas, rotation, outlines, hand-drawn strokes, noise, JPEG, webcam-like
captures) and photo backgrounds with nothing drawn; each prompt holds what the real offline tools
(colours, shapes) found in the rendered picture, as the app writes it, and the answer comes from
the scene's spec. Where the shapes tool is silent (every background that is not plain) only the
image tokens tell what is drawn. lab.data.second_renderer's scenes are never used.

Writes vision.safetensors + vision.json into --out (beside the notes adapters, which
`engine.backends.lm` loads together), a loss curve PNG in --runs, and a resumable state every 50
steps (rerun the same command to go on after an interruption): lab.train_perception.
"""

from __future__ import annotations

import argparse
import random

import torch

from engine.backends.lm import PICTURE_NOTE
from engine.llm.lm import SMOLLM2_SHA256
from engine.llm.perception import VisionConfig
from engine.llm.tokenizer import IMAGE_MARK
from engine.observe import TOOLS, ImageObservations, observe_image
from engine.preprocess import image_to_tensor
from lab.train_perception import Example, add_arguments, frozen_lm, train

NOTHING_DRAWN = 0.15  # share of photo backgrounds with no shape on them
PROBE_WEIGHT = 0.5


def vision_example(rng: random.Random, size: int) -> Example:
    """A varied scene (or a photo background with nothing drawn) with one question about it."""
    from lab.data.notes_qa import question_and_answer
    from lab.data.variety import render_varied, varied_scene
    from lab.scene_probe import scene_target

    empty = rng.random() < NOTHING_DRAWN
    if empty:
        scene = varied_scene(rng, min_shapes=0, max_shapes=0, word_probability=0.0, backgrounds=("photo",))
    else:
        scene = varied_scene(rng, min_shapes=1, max_shapes=4, word_probability=0.0)
    picture = render_varied(scene)
    seen = observe_image(picture, ("colors", "shapes"))
    # what the app's tools would write (a scene without words or faces), and the truth behind it
    findings = ImageObservations(text=(), faces=0, colors=seen.colors, shapes=seen.shapes, tools=TOOLS)
    drawn = tuple(f"{s.color} {s.kind}" for s in scene.shapes)
    truth = ImageObservations(text=(), faces=0, colors=seen.colors, shapes=drawn or None, tools=TOOLS)
    question, answer = question_and_answer(truth, rng)
    note = IMAGE_MARK + "\n" + PICTURE_NOTE.format(index=1, findings=findings.as_sentences())
    return Example(
        messages=[{"role": "user", "content": f"{note}\n{question}"}],
        answer=answer,
        images=[image_to_tensor(picture, size)],
        counts=[VisionConfig(image_size=size).tokens],
        target=None if empty else scene_target(scene.to_dict()),
    )


def probe_loss(probe, model, examples: list[Example], inputs) -> torch.Tensor | None:
    """The scene probe on the encoder's tokens of the pictures that are scenes."""
    rows = [i for i, example in enumerate(examples) if example.target is not None]
    if not rows:
        return None
    tokens = model.image_encoder(inputs.images[rows])  # (n, 9, C)
    return PROBE_WEIGHT * probe.loss(tokens, torch.stack([examples[i].target for i in rows]).to(tokens.device))


def main(argv: list[str] | None = None) -> int:
    from dataclasses import replace

    from lab.scene_probe import SceneProbe

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_arguments(parser, steps=400, runs="vision")
    args = parser.parse_args(argv)
    lm = frozen_lm(args)
    config = VisionConfig(d_model=lm.model.config.d_model, base_sha256=SMOLLM2_SHA256)
    probe = SceneProbe(replace(lm.model.config, image_size=config.image_size), config.image_channels[-1])
    return train(args, lm, config, lambda rng: vision_example(rng, config.image_size), probe, probe_loss)


if __name__ == "__main__":
    raise SystemExit(main())

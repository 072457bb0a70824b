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
steps (rerun the same command to go on after an interruption).
"""

from __future__ import annotations

import argparse
import random
import time
from dataclasses import replace
from pathlib import Path

import torch
from tqdm import tqdm

from engine.backends.lm import NOTES_ADAPTERS, PICTURE_NOTE
from engine.fusion import IMAGE, TEXT, ModelInputs
from engine.llm import load_smollm2
from engine.llm.adapters import merge_adapters
from engine.llm.lm import SMOLLM2_SHA256
from engine.llm.tokenizer import IMAGE_MARK
from engine.llm.vision import VisionConfig, attach_vision, save_vision, vision_state
from engine.observe import TOOLS, ImageObservations, observe_image
from engine.preprocess import image_to_tensor
from lab.train_notes import MAX_LEN, plot_losses

ROOT = Path(__file__).resolve().parents[1]
BUILTIN = ROOT / "assets" / "models" / "builtin"
NOTHING_DRAWN = 0.15  # share of photo backgrounds with no shape on them


def vision_example(rng: random.Random, size: int) -> tuple[list[dict], str, torch.Tensor, torch.Tensor | None]:
    """(messages, answer, the picture as a (3, S, S) tensor, its scene-probe target or None)."""
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
    target = None if empty else scene_target(scene.to_dict())
    return [{"role": "user", "content": f"{note}\n{question}"}], answer, image_to_tensor(picture, size), target


def batch_inputs(tokenizer, examples, tokens: int, device) -> tuple[ModelInputs, torch.Tensor]:
    """The examples as one right-padded batch with image placeholders, and the labels (B, T)."""
    rows, flags, starts = [], [], []
    for messages, answer, _, _ in examples:
        prompt, _ = tokenizer.chat_ids_with_images(messages, tokens)
        full, is_image = tokenizer.chat_ids_with_images(
            messages + [{"role": "assistant", "content": answer}], tokens, add_generation_prompt=False
        )
        rows.append(full[:MAX_LEN])
        flags.append(is_image[:MAX_LEN])
        starts.append(len(prompt))
    width = max(len(r) for r in rows)
    ids = torch.full((len(rows), width), tokenizer.pad_id, dtype=torch.long)
    kinds = torch.full((len(rows), width), TEXT, dtype=torch.long)
    labels = torch.full((len(rows), width), -100, dtype=torch.long)
    for i, (row, flag, start) in enumerate(zip(rows, flags, starts)):
        ids[i, : len(row)] = torch.tensor(row)
        kinds[i, : len(row)] = torch.tensor([IMAGE if f else TEXT for f in flag])
        labels[i, start : len(row)] = ids[i, start : len(row)]  # only the answer is learned
    inputs = ModelInputs(
        ids=ids.to(device),
        positions=torch.arange(width, device=device).expand(len(rows), width),
        lengths=torch.tensor([len(r) for r in rows], device=device),
        media_kind=kinds.to(device),
        images=torch.stack([tensor for _, _, tensor, _ in examples]).to(device),  # (B, 3, S, S)
    )
    return inputs, labels.to(device)


def start_from_builtin(model, config: VisionConfig, builtin: Path) -> None:
    """Copy the built-in model's trained image encoder (stage 1) into `model`'s fresh one."""
    from safetensors.torch import load_file

    state = load_file(builtin / "model.safetensors")
    encoder = {k.removeprefix("image_encoder."): v for k, v in state.items() if k.startswith("image_encoder.")}
    model.image_encoder.load_state_dict(encoder)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=400)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--lr", type=float, default=1e-3, help="the projector's; the encoder gets a tenth")
    parser.add_argument("--probe-weight", type=float, default=0.5)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--adapters", type=Path, default=NOTES_ADAPTERS, help="the notes adapters to merge")
    parser.add_argument("--out", type=Path, default=NOTES_ADAPTERS)
    parser.add_argument("--runs", type=Path, default=ROOT / "runs" / "vision")
    args = parser.parse_args(argv)
    from lab.scene_probe import SceneProbe

    torch.manual_seed(args.seed)
    device = torch.device(args.device)
    lm = load_smollm2(device, dtype=torch.float32)
    merge_adapters(lm.model, args.adapters, SMOLLM2_SHA256)
    lm.model.requires_grad_(False)
    config = attach_vision(lm.model, VisionConfig(d_model=lm.model.config.d_model, base_sha256=SMOLLM2_SHA256))
    start_from_builtin(lm.model, config, BUILTIN)
    model = lm.model
    shaped = replace(model.config, image_size=config.image_size)
    probe = SceneProbe(shaped, model.image_encoder.out_dim).to(device)
    trained = [model.image_encoder, model.fusion.project_image, model.fusion.modality, probe]
    for module in trained:
        module.requires_grad_(True)
    optimizer = torch.optim.AdamW(
        [
            {"params": model.image_encoder.parameters(), "lr": args.lr / 10, "scale": 0.1},
            {"params": [*model.fusion.project_image.parameters(), *model.fusion.modality.parameters()], "scale": 1.0},
            {"params": probe.parameters(), "scale": 1.0},
        ],
        lr=args.lr,
        weight_decay=0.0,
    )
    state_path, losses, step = args.runs / "state.pt", [], 0
    if state_path.is_file():  # resume
        saved = torch.load(state_path, map_location=device)
        model.load_state_dict(saved["vision"], strict=False)
        probe.load_state_dict(saved["probe"])
        optimizer.load_state_dict(saved["optimizer"])
        losses, step = saved["losses"], saved["step"]
        print(f"resuming at step {step}")
    rng = random.Random(f"{args.seed}/{step}")
    schedule = lambda s: min(1.0, (s + 1) / 20) * max(0.1, 1 - s / max(args.steps, 1))  # noqa: E731
    started = time.monotonic()
    progress = tqdm(range(step, args.steps), desc="image projector", initial=step, total=args.steps)
    for step in progress:
        for group in optimizer.param_groups:
            group["lr"] = args.lr * group["scale"] * schedule(step)
        examples = [vision_example(rng, config.image_size) for _ in range(args.batch)]
        inputs, labels = batch_inputs(lm.tokenizer, examples, config.tokens, device)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda"):
            logits = model.logits(model(inputs))  # (B, T, V)
        loss = torch.nn.functional.cross_entropy(
            logits[:, :-1].float().reshape(-1, logits.shape[-1]), labels[:, 1:].reshape(-1), ignore_index=-100
        )
        targets = [(i, t) for i, (_, _, _, t) in enumerate(examples) if t is not None]
        if targets and args.probe_weight:
            tokens = model.image_encoder(inputs.images[[i for i, _ in targets]])  # (n, 9, C)
            loss = loss + args.probe_weight * probe.loss(tokens, torch.stack([t for _, t in targets]).to(device))
        optimizer.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_([p for m in trained for p in m.parameters()], 1.0)
        optimizer.step()
        losses.append(loss.item())
        progress.set_postfix(loss=f"{losses[-1]:.3f}")
        if (step + 1) % 50 == 0 or step + 1 == args.steps:
            args.runs.mkdir(parents=True, exist_ok=True)
            saved = {"vision": vision_state(model), "probe": probe.state_dict(), "optimizer": optimizer.state_dict()}
            torch.save({**saved, "losses": losses, "step": step + 1}, state_path)
    minutes = (time.monotonic() - started) / 60
    config = replace(config, trained={"steps": len(losses), "batch": args.batch, "minutes": round(minutes, 1)})
    save_vision(model, config, args.out)
    args.runs.mkdir(parents=True, exist_ok=True)
    plot_losses(losses, args.runs / "loss.png", title="SmolLM2 image projector (LM loss + scene probe)")
    last = sum(losses[-10:]) / max(len(losses[-10:]), 1)
    print(f"{len(losses)} steps, last loss {last:.3f}, {minutes * 60:.0f} s")
    print(f"image encoder and projector in {args.out}, loss curve {args.runs / 'loss.png'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

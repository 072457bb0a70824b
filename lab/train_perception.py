"""What lab.train_vision and lab.train_hearing share: an encoder and its projector trained through
SmolLM2-135M-Instruct with the notes adapters merged, every LM weight frozen.

    config = attach(lm.model, VisionConfig(...))
    train(args, lm, config, make_example, aux_loss=None)

Stage 1 was the built-in model's training (its encoders, `assets/models/builtin`); `train` copies
that encoder in, trains it at a tenth of the learning rate with a fresh projector at the full
rate, saves a resumable state every 50 steps (rerun the same command to go on after an
interruption) and, at the end, the part's weights and config into --out and a loss curve PNG into
--runs. On a GPU it runs under bf16 autocast.
"""

from __future__ import annotations

import argparse
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path

import torch
from safetensors.torch import load_file
from torch import nn
from tqdm import tqdm

from engine.backends.lm import NOTES_ADAPTERS
from engine.fusion import TEXT, ModelInputs
from engine.llm import load_smollm2
from engine.llm.adapters import merge_adapters
from engine.llm.lm import SMOLLM2_SHA256, LanguageModel
from engine.llm.perception import Part, attach, save_part
from lab.train_notes import MAX_LEN, plot_losses

ROOT = Path(__file__).resolve().parents[1]
BUILTIN = ROOT / "assets" / "models" / "builtin"


@dataclass
class Example:
    """One conversation about one medium, and what the model should answer."""

    messages: list[dict]  # the medium's mark starts its note in the last user message
    answer: str
    images: list[torch.Tensor] = field(default_factory=list)  # each (3, S, S)
    audio: list[torch.Tensor] = field(default_factory=list)  # each (n_mels, F)
    counts: list[int] = field(default_factory=list)  # placeholders for each mark, in order
    target: torch.Tensor | None = None  # the scene probe's (9, 2) target (pictures of scenes)


def add_arguments(parser: argparse.ArgumentParser, steps: int, runs: str) -> None:
    parser.add_argument("--steps", type=int, default=steps)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--lr", type=float, default=1e-3, help="the projector's; the encoder gets a tenth")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--adapters", type=Path, default=NOTES_ADAPTERS, help="the notes adapters to merge")
    parser.add_argument("--out", type=Path, default=NOTES_ADAPTERS)
    parser.add_argument("--runs", type=Path, default=ROOT / "runs" / runs)


def frozen_lm(args) -> LanguageModel:
    """SmolLM2 with the notes adapters merged (what answers about media in the app), frozen."""
    lm = load_smollm2(torch.device(args.device), dtype=torch.float32)
    merge_adapters(lm.model, args.adapters, SMOLLM2_SHA256)
    lm.model.requires_grad_(False)
    return lm


def batch_inputs(tokenizer, examples: list[Example], device) -> tuple[ModelInputs, torch.Tensor]:
    """The examples as one right-padded batch with media placeholders, and the labels (B, T)."""
    rows, row_kinds, starts = [], [], []
    for example in examples:
        prompt, _ = tokenizer.chat_ids_with_media(example.messages, example.counts)
        reply = example.messages + [{"role": "assistant", "content": example.answer}]
        full, kinds = tokenizer.chat_ids_with_media(reply, example.counts, add_generation_prompt=False)
        if len(full) > MAX_LEN:
            raise ValueError(f"an example of {len(full)} tokens is longer than {MAX_LEN}")
        rows.append(full)
        row_kinds.append(kinds)
        starts.append(len(prompt))
    width = max(len(r) for r in rows)
    ids = torch.full((len(rows), width), tokenizer.pad_id, dtype=torch.long)
    kinds = torch.full((len(rows), width), TEXT, dtype=torch.long)
    labels = torch.full((len(rows), width), -100, dtype=torch.long)
    for i, (row, kind, start) in enumerate(zip(rows, row_kinds, starts)):
        ids[i, : len(row)] = torch.tensor(row)
        kinds[i, : len(row)] = torch.tensor(kind)
        labels[i, start : len(row)] = ids[i, start : len(row)]  # only the answer is learned
    images = [image for example in examples for image in example.images]
    inputs = ModelInputs(
        ids=ids.to(device),
        positions=torch.arange(width, device=device).expand(len(rows), width),
        lengths=torch.tensor([len(r) for r in rows], device=device),
        media_kind=kinds.to(device),
        images=torch.stack(images).to(device) if images else None,  # (N, 3, S, S)
        audio=[mel.to(device) for example in examples for mel in example.audio],
    )
    return inputs, labels.to(device)


def start_from_builtin(model: nn.Module, config: Part, builtin: Path = BUILTIN) -> None:
    """Copy the built-in model's trained encoder (stage 1) into `model`'s fresh one."""
    state = load_file(builtin / "model.safetensors")
    prefix = config.encoder + "."
    getattr(model, config.encoder).load_state_dict(
        {k.removeprefix(prefix): v for k, v in state.items() if k.startswith(prefix)}
    )


def train(
    args,
    lm: LanguageModel,
    config: Part,
    make_example: Callable[[random.Random], Example],
    aux: nn.Module | None = None,
    aux_loss: Callable[[nn.Module, nn.Module, list[Example], ModelInputs], torch.Tensor | None] | None = None,
) -> int:
    """Attach `config`'s part to the frozen LM, start its encoder from the built-in model's, and
    train encoder + projector (+ `aux`, e.g. the scene probe, whose `aux_loss` is added)."""
    device, model = torch.device(args.device), lm.model
    torch.manual_seed(args.seed)
    attach(model, config)
    start_from_builtin(model, config)
    encoder, projector = getattr(model, config.encoder), getattr(model.fusion, config.projector)
    modules = {"encoder": encoder, "projector": projector, "modality": model.fusion.modality}
    if aux is not None:
        modules["aux"] = aux.to(device)
    for module in modules.values():
        module.requires_grad_(True)
    groups = [{"params": encoder.parameters(), "lr": args.lr / 10, "scale": 0.1}]
    groups += [{"params": m.parameters(), "scale": 1.0} for name, m in modules.items() if name != "encoder"]
    optimizer = torch.optim.AdamW(groups, lr=args.lr, weight_decay=0.0)
    state_path, losses, step = args.runs / "state.pt", [], 0
    if state_path.is_file():  # resume
        saved = torch.load(state_path, map_location=device)
        for name, module in modules.items():
            module.load_state_dict(saved[name])
        optimizer.load_state_dict(saved["optimizer"])
        losses, step = saved["losses"], saved["step"]
        print(f"resuming at step {step}")
    rng = random.Random(f"{args.seed}/{step}")
    schedule = lambda s: min(1.0, (s + 1) / 20) * max(0.1, 1 - s / max(args.steps, 1))  # noqa: E731
    started = time.monotonic()
    progress = tqdm(range(step, args.steps), desc=f"{config.stem} projector", initial=step, total=args.steps)
    for step in progress:
        for group in optimizer.param_groups:
            group["lr"] = args.lr * group["scale"] * schedule(step)
        examples = [make_example(rng) for _ in range(args.batch)]
        inputs, labels = batch_inputs(lm.tokenizer, examples, device)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda"):
            logits = model.logits(model(inputs))  # (B, T, V)
        loss = nn.functional.cross_entropy(
            logits[:, :-1].float().reshape(-1, logits.shape[-1]), labels[:, 1:].reshape(-1), ignore_index=-100
        )
        extra = aux_loss(modules.get("aux"), model, examples, inputs) if aux_loss is not None else None
        loss = loss + extra if extra is not None else loss
        optimizer.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_([p for m in modules.values() for p in m.parameters()], 1.0)
        optimizer.step()
        losses.append(loss.item())
        progress.set_postfix(loss=f"{losses[-1]:.3f}")
        if (step + 1) % 50 == 0 or step + 1 == args.steps:
            args.runs.mkdir(parents=True, exist_ok=True)
            saved = {name: module.state_dict() for name, module in modules.items()}
            torch.save({**saved, "optimizer": optimizer.state_dict(), "losses": losses, "step": step + 1}, state_path)
    minutes = (time.monotonic() - started) / 60
    config = replace(config, trained={"steps": len(losses), "batch": args.batch, "minutes": round(minutes, 1)})
    save_part(model, config, args.out)
    args.runs.mkdir(parents=True, exist_ok=True)
    plot_losses(losses, args.runs / "loss.png", title=f"SmolLM2 {config.stem} projector")
    last = sum(losses[-10:]) / max(len(losses[-10:]), 1)
    print(f"{len(losses)} steps, last loss {last:.3f}, {minutes * 60:.0f} s")
    print(f"{config.stem} encoder and projector in {args.out}, loss curve {args.runs / 'loss.png'}")
    return 0

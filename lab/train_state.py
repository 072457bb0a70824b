"""What a training run keeps in its --out folder besides the final model: the resumable state in
last/ (a checkpoint directory + optimizer.pt, scene_probe.pt and state.json), log.jsonl and loss.png."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import torch

from engine.loading import load_checkpoint, save_checkpoint
from engine.model import MultimodalModel
from engine.tokenizer import ChatTokenizer


def save_state(out: Path, model, tokenizer, optimizer, step: int, history: list[dict], probe=None) -> None:
    """Write out/last (by way of last.tmp, so an interruption leaves the previous one whole)."""
    tmp = out / "last.tmp"
    save_checkpoint(tmp, model, tokenizer)
    torch.save(optimizer.state_dict(), tmp / "optimizer.pt")
    if probe is not None:
        torch.save(probe.state_dict(), tmp / "scene_probe.pt")
    (tmp / "state.json").write_text(json.dumps({"step": step, "history": history}))
    if (out / "last").exists():
        (out / "last").rename(out / "last.old")
    tmp.rename(out / "last")
    if (out / "last.old").exists():
        shutil.rmtree(out / "last.old")


def load_state(out: Path, device) -> tuple[MultimodalModel, ChatTokenizer, int, list[dict]] | None:
    """(model, tokenizer, step, history) of the run in `out` to resume, or None when there is none."""
    if not (out / "last" / "state.json").is_file():
        return None
    model, tokenizer = load_checkpoint(out / "last", device=device, dtype=torch.float32)
    state = json.loads((out / "last" / "state.json").read_text())
    return model, tokenizer, state["step"], state["history"]


def load_probe_state(probe, run: Path, device) -> None:
    """Go on with the scene probe of the run folder `run`, where it saved one."""
    if (run / "last" / "scene_probe.pt").is_file():
        probe.load_state_dict(torch.load(run / "last" / "scene_probe.pt", map_location=device))


def load_optimizer_state(optimizer, out: Path, device) -> None:
    if (out / "last" / "optimizer.pt").is_file():
        optimizer.load_state_dict(torch.load(out / "last" / "optimizer.pt", map_location=device))


def write_log(history: list[dict], path: Path) -> None:
    with open(path, "w") as log:
        log.writelines(json.dumps(h) + "\n" for h in history)


def plot_history(history: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4))
    train = [(h["step"], h["loss"]) for h in history if "loss" in h]
    held = [(h["step"], h["heldout_loss"]) for h in history if "heldout_loss" in h]
    probe = [(h["step"], h["probe_loss"]) for h in history if "probe_loss" in h]
    grounding = [(h["step"], h["grounding_loss"]) for h in history if "grounding_loss" in h]
    if train:
        ax.plot(*zip(*train, strict=True), label="train", alpha=0.7)
    if probe:
        ax.plot(*zip(*probe, strict=True), label="scene probe (image encoder)", alpha=0.5)
    if grounding:
        ax.plot(*zip(*grounding, strict=True), label="grounding (attention on the asked shape)", alpha=0.5)
    if held:
        ax.plot(*zip(*held, strict=True), "o-", label="held-out")
    ax.set_xlabel("step")
    ax.set_ylabel("cross-entropy (assistant tokens)")
    ax.set_yscale("log")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)

"""Train the built-in model: `python -m lab.train --data DIR --out DIR [options]`.

Data is a directory written by `python -m lab.data` (train.jsonl / heldout.jsonl + media).
The run writes into --out:

    train_config.json   the TrainConfig of this run
    last/               resumable state: a checkpoint directory + optimizer.pt + state.json
    model/              the final checkpoint (config.json, model.safetensors, tokenizer.json)
    loss.png, log.jsonl the loss curves and every logged number

An interrupted run resumes from `last/` when started again with the same --out. Training is
deterministic for a given seed on one machine; CUDA runs use bf16 autocast.

The settings are lab.train_config, the batches lab.batches, the losses lab.losses and the
files in --out lab.train_state; this module sets a run up and loops.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import random
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import torch
from tqdm import tqdm

from engine.config import preset
from engine.loading import load_checkpoint, resolve_device, save_checkpoint, save_sampling
from engine.model import MultimodalModel
from engine.prompt import Prompt
from engine.tokenizer import ChatTokenizer
from engine.types import CheckpointError, EngineError
from lab.batches import TrainSet, encode_examples
from lab.grounding import AttentionGrounding
from lab.losses import accumulate_gradients, evaluate_loss
from lab.observe_cache import OBSERVATION_CACHE
from lab.scene_probe import SceneProbe
from lab.train_config import TrainConfig
from lab.train_state import load_optimizer_state, load_probe_state, load_state, plot_history, save_state, write_log


@dataclass
class Run:
    """What a run trains and with what, once set up (`set_up`)."""

    out: Path
    device: torch.device
    model: MultimodalModel
    tokenizer: ChatTokenizer
    data: TrainSet
    heldout: list[Prompt]  # the first cfg.eval_examples held-out conversations
    optimizer: torch.optim.Optimizer
    probe: SceneProbe | None
    grounding: AttentionGrounding | None


def learning_rate(step: int, cfg: TrainConfig) -> float:
    if step < cfg.warmup_steps:
        return cfg.lr * (step + 1) / cfg.warmup_steps
    progress = min(1.0, (step - cfg.warmup_steps) / max(1, cfg.steps - cfg.warmup_steps))
    return cfg.lr * (cfg.min_lr_ratio + (1 - cfg.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * progress)))


def start_model(
    cfg: TrainConfig, out: Path, device, examples
) -> tuple[MultimodalModel, ChatTokenizer, int, list[dict]]:
    """(model, tokenizer, step, history) to go on from: this run's last/ state, else cfg.init_from's
    model, else a new model of cfg.preset with a tokenizer trained on the `examples`."""
    resumed = load_state(out, device)
    if resumed is not None:
        print(f"Resuming from step {resumed[2]} in {out / 'last'}", file=sys.stderr)
        return resumed
    if cfg.init_from:
        model, tokenizer = load_checkpoint(Path(cfg.init_from) / "model", device=device, dtype=torch.float32)
        print(
            f"Starting from {Path(cfg.init_from) / 'model'} (preset and model_overrides are not used)", file=sys.stderr
        )
        return model, tokenizer, 0, []
    texts = [t.text for e in examples for t in e.conversation.turns] + [e.conversation.system_prompt for e in examples]
    base = preset(cfg.preset, **cfg.model_overrides)
    tokenizer = ChatTokenizer.train(texts, vocab_size=base.vocab_size)
    model = MultimodalModel(dataclasses.replace(base, vocab_size=tokenizer.vocab_size)).to(device)
    return model, tokenizer, 0, []


def make_optimizer(cfg: TrainConfig, model: MultimodalModel, probe: SceneProbe | None) -> torch.optim.Optimizer:
    """AdamW, weight decay on the matrices (and the probe) only."""
    decay = [p for n, p in model.named_parameters() if p.dim() >= 2]
    no_decay = [p for n, p in model.named_parameters() if p.dim() < 2]
    groups = [{"params": decay, "weight_decay": cfg.weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    if probe is not None:
        groups.append({"params": list(probe.parameters()), "weight_decay": cfg.weight_decay})
    return torch.optim.AdamW(groups, lr=cfg.lr, betas=(0.9, 0.95))


def set_up(cfg: TrainConfig) -> tuple[Run, int, list[dict]]:
    """Seed, load the data, build (or resume) the model, probe and optimizer: (run, step, history)."""
    from lab.data import load_dataset

    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    device = resolve_device(cfg.device)
    random.seed(cfg.seed)
    torch.manual_seed(cfg.seed)
    train_examples = load_dataset(cfg.data, "train")
    heldout_examples = load_dataset(cfg.data, "heldout")
    model, tokenizer, step, history = start_model(cfg, out, device, train_examples)
    (out / "train_config.json").write_text(json.dumps(dataclasses.asdict(cfg), indent=2))
    model.train().requires_grad_(True)
    config = model.config
    print(
        f"Model: {model.num_parameters() / 1e6:.2f} M parameters, {config.decoder} decoder, "
        f"{config.fusion} fusion, on {device}",
        file=sys.stderr,
    )

    cache = Path(cfg.data) / OBSERVATION_CACHE
    data = TrainSet.encode(cfg, train_examples, tokenizer, config, cache)
    probe = None
    if cfg.scene_probe:
        probe = SceneProbe(config, model.image_encoder.out_dim).to(device)
        start = out if step else Path(cfg.init_from) if cfg.init_from else None  # a run to continue
        if start is not None:
            load_probe_state(probe, start, device)
    grounding = (
        AttentionGrounding(config, cfg.grounding_layer, cfg.grounding_head, cfg.grounding_detach_keys)
        if cfg.grounding
        else None
    )
    heldout = encode_examples(heldout_examples, tokenizer, config, "encoding held-out", cache)[: cfg.eval_examples]
    optimizer = make_optimizer(cfg, model, probe)
    if step:
        load_optimizer_state(optimizer, out, device)
    return Run(out, device, model, tokenizer, data, heldout, optimizer, probe, grounding), step, history


def train_step(cfg: TrainConfig, run: Run, step: int) -> tuple[float, float, float | None, float | None]:
    """One optimizer step on step `step`'s batch: (learning rate, loss, probe loss, grounding loss)."""
    batch, targets, queries = run.data.batch(step, run.grounding is not None)
    lr = learning_rate(step, cfg)
    for group in run.optimizer.param_groups:
        group["lr"] = lr
    run.optimizer.zero_grad(set_to_none=True)
    losses = accumulate_gradients(
        run.model, batch, run.device, run.probe, targets, run.grounding, queries, cfg.grounding
    )
    torch.nn.utils.clip_grad_norm_(run.model.parameters(), cfg.grad_clip)
    run.optimizer.step()
    return lr, *losses


def run_steps(cfg: TrainConfig, run: Run, step: int, history: list[dict]) -> None:
    """Train from `step` to cfg.steps (or cfg.max_minutes), appending to `history`; evaluate on the
    held-out prompts and save the resumable state every so often and at the end."""
    started = time.monotonic()
    progress = tqdm(total=cfg.steps, initial=step, desc="training", file=sys.stderr, dynamic_ncols=True)
    while step < cfg.steps:
        lr, loss, probe_loss, grounding_loss = train_step(cfg, run, step)
        step += 1
        history.append(
            {"step": step, "loss": round(loss, 5), "lr": lr}
            | ({"probe_loss": round(probe_loss, 5)} if probe_loss is not None else {})
            | ({"grounding_loss": round(grounding_loss, 5)} if grounding_loss is not None else {})
        )
        progress.update(1)
        progress.set_postfix(
            loss=f"{loss:.3f}",
            **({"probe": f"{probe_loss:.3f}"} if probe_loss is not None else {}),
            **({"ground": f"{grounding_loss:.3f}"} if grounding_loss is not None else {}),
        )
        out_of_time = cfg.max_minutes and time.monotonic() - started > cfg.max_minutes * 60
        if step % cfg.eval_every == 0 or step == cfg.steps or out_of_time:
            heldout = evaluate_loss(run.model, run.heldout, cfg.batch_size, run.device)
            history.append(
                {"step": step, "heldout_loss": round(heldout, 5), "heldout_ppl": round(math.exp(heldout), 3)}
            )
            progress.write(f"step {step}: train {loss:.3f}, held-out {heldout:.3f} (ppl {math.exp(heldout):.2f})")
        if step % cfg.checkpoint_every == 0 or step == cfg.steps or out_of_time:
            save_state(run.out, run.model, run.tokenizer, run.optimizer, step, history, run.probe)
            plot_history(history, run.out / "loss.png")
        if out_of_time:
            progress.write(f"Stopping at step {step}: the {cfg.max_minutes}-minute budget is spent.")
            break
    progress.close()


def train(cfg: TrainConfig) -> Path:
    """Run (or resume) training; returns the final checkpoint directory."""
    run, step, history = set_up(cfg)
    run_steps(cfg, run, step, history)
    write_log(history, run.out / "log.jsonl")
    final = save_checkpoint(run.out / "model", run.model, run.tokenizer)
    save_sampling(final, temperature=0.0)  # greedy: how lab.evaluate measures it
    plot_history(history, run.out / "loss.png")
    print(f"Saved {final}", file=sys.stderr)
    return final


def _flag(text: str) -> bool:
    if text.lower() not in ("true", "false", "1", "0", "yes", "no"):
        raise argparse.ArgumentTypeError(f"expected true or false, not {text!r}")
    return text.lower() in ("true", "1", "yes")


def _weights(text: str) -> dict:
    """--source-weights scene=0.25,sound=2"""
    try:
        return {name.strip(): float(value) for name, value in (pair.split("=") for pair in text.split(","))}
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected SOURCE=WEIGHT pairs like scene=0.25,sound=2, not {text!r}"
        ) from None


def parse_args(argv=None) -> TrainConfig:
    parser = argparse.ArgumentParser(prog="python -m lab.train", description=__doc__.split("\n")[0])
    parser.add_argument("--config", help="a JSON file of TrainConfig fields (flags override it)")
    for f in dataclasses.fields(TrainConfig):
        if f.name == "model_overrides":
            parser.add_argument("--decoder", choices=["transformer", "lstm"])
            parser.add_argument("--fusion", choices=["concat", "sum", "gated"])
            continue
        kind = type(f.default) if f.default is not dataclasses.MISSING else str
        if kind is bool:
            kind = _flag
        if f.name == "source_weights":
            kind = _weights
        parser.add_argument("--" + f.name.replace("_", "-"), type=kind, default=None)
    args = parser.parse_args(argv)
    values = json.loads(Path(args.config).read_text()) if args.config else {}
    values.update(
        {
            k: v
            for k, v in vars(args).items()
            if v is not None and k in {f.name for f in dataclasses.fields(TrainConfig)}
        }
    )
    overrides = dict(values.pop("model_overrides", {}))
    overrides.update({k: getattr(args, k) for k in ("decoder", "fusion") if getattr(args, k)})
    return TrainConfig(**values, model_overrides=overrides)


def main(argv=None) -> int:
    try:
        train(parse_args(argv))
    except (EngineError, CheckpointError, FileNotFoundError, json.JSONDecodeError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Train the built-in model: `python -m lab.train --data DIR --out DIR [options]`.

Data is a directory written by `python -m lab.data` (train.jsonl / heldout.jsonl + media).
The run writes into --out:

    train_config.json   the TrainConfig of this run
    last/               resumable state: a checkpoint directory + optimizer.pt + state.json
    model/              the final checkpoint (config.json, model.safetensors, tokenizer.json)
    loss.png, log.jsonl the loss curves and every logged number

An interrupted run resumes from `last/` when started again with the same --out. Training is
deterministic for a given seed on one machine; CUDA runs use bf16 autocast.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import itertools
import json
import math
import random
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F
from tqdm import tqdm

from engine.config import ModelConfig, preset
from lab.data.quiz import draw_quiz, is_quizzable
from lab.grounding import AttentionGrounding, grounding_queries
from lab.length_groups import length_groups
from engine.loading import load_checkpoint, resolve_device, save_checkpoint, save_sampling
from engine.model import MultimodalModel
from lab.observe_cache import load_observations
from engine.prompt import ContextTooLong, Prompt, build_prompt, collate
from lab.scene_probe import SceneProbe, scene_target
from engine.tokenizer import ChatTokenizer
from engine.types import CheckpointError, EngineError, InputError


OBSERVATION_CACHE = "observations.json"  # in the dataset folder


@dataclass
class TrainConfig:
    data: str = "data/builtin"
    out: str = "runs/builtin"
    preset: str = "small"
    model_overrides: dict = field(default_factory=dict)  # e.g. {"decoder": "lstm", "fusion": "sum"}
    steps: int = 3000
    batch_size: int = 32
    lr: float = 2e-3
    min_lr_ratio: float = 0.1  # cosine decay down to lr * this
    warmup_steps: int = 100
    weight_decay: float = 0.05
    grad_clip: float = 1.0
    eval_every: int = 250
    eval_examples: int = 256
    checkpoint_every: int = 250
    max_minutes: float = 0.0  # stop (and save) after this long; 0 = no limit
    scene_probe: bool = True  # train the image encoder with the auxiliary scene probe too
    init_from: str = ""  # fine-tune: start from this run folder's model (and its probe), not from scratch
    source_weights: dict = field(default_factory=dict)  # e.g. {"scene": 0.25}: drawn a quarter as often
    scene_questions: int = 1  # >1: each scene picked is asked 1..N fresh questions (lab.data.quiz)
    # weight of the grounding loss (lab.grounding): one head looks at the shape a quiz answer is
    # about; needs scene_questions > 1 (the quizzes know the cells); 0 = off
    grounding: float = 0.0
    grounding_layer: int = -2  # which decoder layer's head (negative: from the top)
    grounding_head: int = 0
    grounding_detach_keys: bool = False  # the grounding loss moves the queries only (lab.grounding)
    seed: int = 0
    device: str = "auto"
    threads: int = 0  # torch CPU threads; 0 = torch's default

    def __post_init__(self) -> None:
        weights = self.source_weights
        if not isinstance(weights, dict) or not all(isinstance(w, (int, float)) and w >= 0 for w in weights.values()):
            raise InputError(f"source_weights must map sources to numbers >= 0, not {self.source_weights}")
        if not isinstance(self.scene_questions, int) or self.scene_questions < 1:
            raise InputError(f"scene_questions must be at least 1, not {self.scene_questions}")
        if self.grounding < 0 or (self.grounding and self.scene_questions < 2):
            raise InputError(f"grounding must be >= 0 and needs scene_questions of 2 or more "
                             f"(got grounding {self.grounding}, scene_questions {self.scene_questions})")


def encode_examples(examples, tokenizer: ChatTokenizer, config: ModelConfig, desc: str,
                    observation_cache: Path | None = None) -> list[Prompt]:
    """Tokenize and preprocess every conversation once; over-long ones are left out (and counted).

    The tools' observations of every medium are read from `observation_cache` (a JSON file,
    see lab.observe_cache) or computed once and written there.
    """
    return [prompt for _, prompt in encode_pairs(examples, tokenizer, config, desc, observation_cache)]


def encode_pairs(examples, tokenizer: ChatTokenizer, config: ModelConfig, desc: str,
                 observation_cache: Path | None = None) -> list[tuple[object, Prompt]]:
    """Like `encode_examples`, keeping each prompt's example: [(example, prompt)]."""
    load_observations(examples, config.observations, observation_cache)
    pairs, too_long = [], 0
    for example in tqdm(examples, desc=desc, file=sys.stderr, leave=False):
        try:
            prompt = build_prompt(example.conversation, tokenizer, config, add_generation_prompt=False)
        except ContextTooLong:
            too_long += 1
            continue
        except InputError as error:
            raise InputError(f"Example {getattr(example, 'id', '?')} cannot be used: {error}") from error
        if prompt.dropped_turns:
            too_long += 1
            continue
        pairs.append((example, prompt))
    if too_long:
        print(f"{desc}: left out {too_long} conversations longer than {config.max_seq_len} tokens", file=sys.stderr)
    if not pairs:
        raise InputError(f"{desc}: no usable examples.")
    return pairs


def batch_loss(model: MultimodalModel, prompts: list[Prompt], device: torch.device,
               probe: SceneProbe | None = None, targets: list | None = None) -> tuple[torch.Tensor, int, torch.Tensor | None]:
    """Mean cross-entropy over the assistant tokens of a batch, how many there were, and the
    scene probe's loss (None without a `probe`, per-prompt scene `targets` — None where a prompt
    is not a scene — or scenes in the batch; see lab.scene_probe)."""
    inputs = collate(prompts, device)
    width = inputs.ids.shape[1]
    mask = torch.zeros(len(prompts), width, dtype=torch.bool)
    for row, prompt in enumerate(prompts):
        mask[row, : len(prompt)] = torch.tensor(prompt.target_mask)
    mask = mask[:, 1:].to(device)  # position t predicts token t + 1
    captured = []
    hook = model.image_encoder.register_forward_hook(lambda module, args, out: captured.append(out)) if probe else None
    try:
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda"):
            hidden = model(inputs)[:, :-1]  # (B, T-1, C)
            logits = model.logits(hidden[mask])  # (n_targets, V)
    finally:
        if hook:
            hook.remove()
    targets_ids = inputs.ids[:, 1:][mask]
    loss, probe_loss = F.cross_entropy(logits.float(), targets_ids), None
    if probe and captured and targets:
        first_image = [sum(len(p.images) for p in prompts[:row]) for row in range(len(prompts))]
        rows = probed_rows(prompts, targets)
        if rows:
            tokens = captured[0][[first_image[row] for row in rows]]  # (N_scenes, P, C)
            probe_loss = probe.loss(tokens, torch.stack([targets[row] for row in rows]).to(device))
    return loss, int(mask.sum()), probe_loss


def probed_rows(prompts: list[Prompt], targets: list) -> list[int]:
    """The rows of a batch whose (first) picture the scene probe reads: scenes with a picture."""
    return [row for row, target in enumerate(targets) if target is not None and prompts[row].images]


def accumulate_gradients(model: MultimodalModel, prompts: list[Prompt], device: torch.device,
                         probe: SceneProbe | None, targets: list, grounding: AttentionGrounding | None = None,
                         queries: list | None = None,
                         grounding_weight: float = 1.0) -> tuple[float, float | None, float | None]:
    """Backpropagate the batch's loss in micro-batches of similar length (lab.length_groups);
    the gradients are those of the whole batch's mean token loss (+ mean probe loss, + the weighted
    mean grounding loss over the `queries` of each prompt, lab.grounding).
    Returns (loss, probe loss, grounding loss) as numbers, the last two None when there was none."""
    tokens = sum(sum(prompt.target_mask) for prompt in prompts)
    scenes = len(probed_rows(prompts, targets)) if probe else 0
    looks = sum(map(len, queries)) if grounding and queries else 0
    total, probe_total, grounding_total = 0.0, 0.0, 0.0
    for group in length_groups([len(prompt) for prompt in prompts]):
        part = [prompts[i] for i in group]
        with grounding.watch(model) if looks else contextlib.nullcontext():
            loss, n, probe_loss = batch_loss(model, part, device, probe, [targets[i] for i in group])
        share = loss * (n / tokens)
        if probe_loss is not None:
            probed = len(probed_rows(part, [targets[i] for i in group]))
            share = share + probe_loss * (probed / scenes)
            probe_total += probe_loss.item() * probed / scenes
        if looks:
            grounding_loss, m = grounding.loss([queries[i] for i in group])
            if grounding_loss is not None:
                share = share + grounding_weight * grounding_loss * (m / looks)
                grounding_total += grounding_loss.item() * m / looks
        share.backward()
        total += loss.item() * n / tokens
    return total, probe_total if scenes else None, grounding_total if looks else None


def draw_weights(cfg: TrainConfig, sources: list[str]) -> list[float] | None:
    """Cumulative draw weights of examples from these sources (cfg.source_weights), or None: all equal."""
    return list(itertools.accumulate(cfg.source_weights.get(source, 1.0) for source in sources)) \
        if cfg.source_weights else None


def draw_batch(cfg: TrainConfig, step: int, count: int,
               cum_weights: list[float] | None) -> tuple[random.Random, list[int]]:
    """The indices (among `count` examples) of step `step`'s batch, and the generator that goes on to quiz
    its scenes: both depend on (seed, step) only, so a resumed run draws what it would have drawn."""
    order = random.Random(cfg.seed * 1_000_003 + step)
    chosen = order.sample(range(count), min(cfg.batch_size, count)) if cum_weights is None \
        else order.choices(range(count), cum_weights=cum_weights, k=cfg.batch_size)
    return order, chosen


def learning_rate(step: int, cfg: TrainConfig) -> float:
    if step < cfg.warmup_steps:
        return cfg.lr * (step + 1) / cfg.warmup_steps
    progress = min(1.0, (step - cfg.warmup_steps) / max(1, cfg.steps - cfg.warmup_steps))
    return cfg.lr * (cfg.min_lr_ratio + (1 - cfg.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * progress)))


@torch.no_grad()
def evaluate_loss(model: MultimodalModel, prompts: list[Prompt], batch_size: int, device) -> float:
    model.eval()
    total, count = 0.0, 0
    for start in range(0, len(prompts), batch_size):
        loss, n, _ = batch_loss(model, prompts[start:start + batch_size], device)
        total, count = total + loss.item() * n, count + n
    model.train()
    return total / max(count, 1)


def _save_state(out: Path, model, tokenizer, optimizer, step: int, history: list[dict], probe=None) -> None:
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
        import shutil

        shutil.rmtree(out / "last.old")


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
        ax.plot(*zip(*train), label="train", alpha=0.7)
    if probe:
        ax.plot(*zip(*probe), label="scene probe (image encoder)", alpha=0.5)
    if grounding:
        ax.plot(*zip(*grounding), label="grounding (attention on the asked shape)", alpha=0.5)
    if held:
        ax.plot(*zip(*held), "o-", label="held-out")
    ax.set_xlabel("step")
    ax.set_ylabel("cross-entropy (assistant tokens)")
    ax.set_yscale("log")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def train(cfg: TrainConfig) -> Path:
    """Run (or resume) training; returns the final checkpoint directory."""
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

    step, history = 0, []
    if (out / "last" / "state.json").is_file():
        model, tokenizer = load_checkpoint(out / "last", device=device, dtype=torch.float32)
        state = json.loads((out / "last" / "state.json").read_text())
        step, history = state["step"], state["history"]
        print(f"Resuming from step {step} in {out / 'last'}", file=sys.stderr)
    elif cfg.init_from:
        model, tokenizer = load_checkpoint(Path(cfg.init_from) / "model", device=device, dtype=torch.float32)
        print(f"Starting from {Path(cfg.init_from) / 'model'} (preset and model_overrides are not used)",
              file=sys.stderr)
    else:
        texts = [t.text for e in train_examples for t in e.conversation.turns] + \
                [e.conversation.system_prompt for e in train_examples]
        base = preset(cfg.preset, **cfg.model_overrides)
        tokenizer = ChatTokenizer.train(texts, vocab_size=base.vocab_size)
        model = MultimodalModel(dataclasses.replace(base, vocab_size=tokenizer.vocab_size)).to(device)
    (out / "train_config.json").write_text(json.dumps(dataclasses.asdict(cfg), indent=2))
    model.train().requires_grad_(True)
    config = model.config
    print(f"Model: {model.num_parameters() / 1e6:.2f} M parameters, {config.decoder} decoder, "
          f"{config.fusion} fusion, on {device}", file=sys.stderr)

    cache = Path(cfg.data) / OBSERVATION_CACHE
    train_pairs = encode_pairs(train_examples, tokenizer, config, "encoding train", cache)
    train_prompts = [prompt for _, prompt in train_pairs]
    scene_targets = [scene_target(example.meta.get("scene")) for example, _ in train_pairs]
    draw = draw_weights(cfg, [example.source for example, _ in train_pairs])
    if draw is not None and not draw[-1]:
        raise InputError(f"source_weights {cfg.source_weights} leave nothing of {cfg.data} to train on.")
    quizzable = [example if cfg.scene_questions > 1 and is_quizzable(example) else None for example, _ in train_pairs]
    probe = None
    if cfg.scene_probe:
        probe = SceneProbe(config, model.image_encoder.out_dim).to(device)
        start = out if step else Path(cfg.init_from) if cfg.init_from else None  # a run to continue
        if start is not None and (start / "last" / "scene_probe.pt").is_file():
            probe.load_state_dict(torch.load(start / "last" / "scene_probe.pt", map_location=device))
    grounding = AttentionGrounding(config, cfg.grounding_layer, cfg.grounding_head,
                                   cfg.grounding_detach_keys) if cfg.grounding else None
    heldout_prompts = encode_examples(heldout_examples, tokenizer, config, "encoding held-out", cache)[: cfg.eval_examples]
    decay = [p for n, p in model.named_parameters() if p.dim() >= 2]
    no_decay = [p for n, p in model.named_parameters() if p.dim() < 2]
    groups = [{"params": decay, "weight_decay": cfg.weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    if probe is not None:
        groups.append({"params": list(probe.parameters()), "weight_decay": cfg.weight_decay})
    optimizer = torch.optim.AdamW(groups, lr=cfg.lr, betas=(0.9, 0.95))
    if step and (out / "last" / "optimizer.pt").is_file():
        optimizer.load_state_dict(torch.load(out / "last" / "optimizer.pt", map_location=device))

    started = time.monotonic()
    progress = tqdm(total=cfg.steps, initial=step, desc="training", file=sys.stderr, dynamic_ncols=True)
    while step < cfg.steps:
        order, chosen = draw_batch(cfg, step, len(train_prompts), draw)
        batch, queries = [], []
        for i in chosen:
            if quizzable[i] is None:
                batch.append(train_prompts[i])
                queries.append([])
                continue
            drawn = draw_quiz(quizzable[i], order, cfg.scene_questions)
            batch.append(build_prompt(drawn.conversation, tokenizer, config, add_generation_prompt=False))
            queries.append(grounding_queries(batch[-1], drawn.answer_cells, config.image_tokens) if grounding else [])
        for group in optimizer.param_groups:
            group["lr"] = learning_rate(step, cfg)
        optimizer.zero_grad(set_to_none=True)
        loss, probe_loss, grounding_loss = accumulate_gradients(model, batch, device, probe,
                                                                [scene_targets[i] for i in chosen],
                                                                grounding, queries, cfg.grounding)
        torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
        optimizer.step()
        step += 1
        history.append({"step": step, "loss": round(loss, 5), "lr": group["lr"]}
                       | ({"probe_loss": round(probe_loss, 5)} if probe_loss is not None else {})
                       | ({"grounding_loss": round(grounding_loss, 5)} if grounding_loss is not None else {}))
        progress.update(1)
        progress.set_postfix(loss=f"{loss:.3f}", **({"probe": f"{probe_loss:.3f}"} if probe_loss is not None else {}),
                             **({"ground": f"{grounding_loss:.3f}"} if grounding_loss is not None else {}))
        out_of_time = cfg.max_minutes and time.monotonic() - started > cfg.max_minutes * 60
        if step % cfg.eval_every == 0 or step == cfg.steps or out_of_time:
            heldout = evaluate_loss(model, heldout_prompts, cfg.batch_size, device)
            history.append({"step": step, "heldout_loss": round(heldout, 5), "heldout_ppl": round(math.exp(heldout), 3)})
            progress.write(f"step {step}: train {loss:.3f}, held-out {heldout:.3f} (ppl {math.exp(heldout):.2f})")
        if step % cfg.checkpoint_every == 0 or step == cfg.steps or out_of_time:
            _save_state(out, model, tokenizer, optimizer, step, history, probe)
            plot_history(history, out / "loss.png")
        if out_of_time:
            progress.write(f"Stopping at step {step}: the {cfg.max_minutes}-minute budget is spent.")
            break
    progress.close()
    with open(out / "log.jsonl", "w") as log:
        log.writelines(json.dumps(h) + "\n" for h in history)
    final = save_checkpoint(out / "model", model, tokenizer)
    save_sampling(final, temperature=0.0)  # greedy: how lab.evaluate measures it
    plot_history(history, out / "loss.png")
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
        raise argparse.ArgumentTypeError(f"expected SOURCE=WEIGHT pairs like scene=0.25,sound=2, not {text!r}") from None


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
    values.update({k: v for k, v in vars(args).items()
                   if v is not None and k in {f.name for f in dataclasses.fields(TrainConfig)}})
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

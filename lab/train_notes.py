"""Train LoRA adapters that teach SmolLM2-135M-Instruct to answer from the tools' findings.

    python -m lab.train_notes                       # ~25 min on 2 CPU cores: 300 steps of 8
    python -m lab.train_notes --steps 3 --out /tmp/a  # a smoke run (what CI does)
    python -m lab.train_notes --device cuda --batch 32  # on a GPU (bf16 autocast)
    python -m lab.train_notes --init assets/models/smollm2-notes --steps 150 --lr 1.5e-4 --runs runs/notes-more
                                                      # further steps from the shipped adapters

The LM stays frozen; rank-8 adapters on each attention projection learn from two streams:
questions about a picture's findings (lab.data.notes_qa, answers derived from the findings)
and, so that its conversation does not change, the base model's own greedy replies to chat
openers (self-distillation on chatterbot-corpus prompts; the factual-QA set of lab.lm_eval
is never used). Writes adapters.safetensors + adapters.json to --out (what
`engine.backends.lm` merges at load), a loss curve PNG beside them in --runs, and a resumable
state every 50 steps (rerun the same command to go on after an interruption).
"""

from __future__ import annotations

import argparse
import json
import random
import time
from pathlib import Path

import torch
from tqdm import tqdm

from engine.fusion import TEXT, ModelInputs
from engine.generation import generate
from engine.llm import load_smollm2
from engine.llm.adapters import ADAPTERS_FILE, AdapterConfig, adapter_state, add_lora, save_adapters
from engine.llm.lm import SMOLLM2_SHA256
from engine.types import GenerationConfig

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_OUT = ROOT / "assets" / "models" / "smollm2-notes"
MAX_LEN = 256


def chat_prompts(limit: int, seed: int = 0) -> list[str]:
    """Openers from chatterbot-corpus's training split (its held-out dialogues are not used)."""
    from lab.data.chitchat import load_dialogues, split_dialogues

    train, _ = split_dialogues(load_dialogues())
    prompts = sorted({d.pairs[0][0] for d in train if d.pairs})
    random.Random(seed).shuffle(prompts)
    return prompts[:limit]


def _batch_inputs(rows: list[list[int]], pad_id: int, device) -> ModelInputs:
    width = max(len(r) for r in rows)
    ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
    for i, row in enumerate(rows):
        ids[i, : len(row)] = torch.tensor(row)
    ids = ids.to(device)
    return ModelInputs(
        ids=ids,
        positions=torch.arange(width, device=device).expand(len(rows), width),
        lengths=torch.tensor([len(r) for r in rows], device=device),
        media_kind=torch.full_like(ids, TEXT),
    )


def distilled_chat(lm, prompts: list[str], cache: Path, batch: int = 16) -> list[tuple[list[dict], str]]:
    """The base model's greedy replies to each prompt (cached in `cache`: they cost minutes)."""
    if cache.is_file():
        stored = json.loads(cache.read_text())
        if [p for p, _ in stored] == prompts:
            return [([{"role": "user", "content": p}], r) for p, r in stored]
    config = GenerationConfig(temperature=0, max_new_tokens=64)
    stop_ids, pairs = lm.tokenizer.stop_ids, []
    for start in tqdm(range(0, len(prompts), batch), desc="base replies (self-distillation)"):
        chunk = prompts[start : start + batch]
        rows = [lm.tokenizer.safe_chat_ids([{"role": "user", "content": p}]) for p in chunk]
        out: list[list[int]] = [[] for _ in chunk]
        done = [False] * len(chunk)
        for tokens in generate(lm.model, _batch_inputs(rows, lm.tokenizer.pad_id, lm.device), config, stop_ids):
            for i, token in enumerate(tokens.tolist()):
                done[i] = done[i] or token in stop_ids
                if not done[i]:
                    out[i].append(token)
        pairs += [(p, lm.tokenizer.decode(ids).strip()) for p, ids in zip(chunk, out)]
    cache.parent.mkdir(parents=True, exist_ok=True)
    cache.write_text(json.dumps(pairs, indent=1))
    return [([{"role": "user", "content": p}], r) for p, r in pairs]


def encode(tokenizer, messages: list[dict], answer: str) -> tuple[list[int], int]:
    """(ids of the whole exchange, where the answer starts)."""
    prompt = tokenizer.safe_chat_ids(messages, add_generation_prompt=True)
    full = tokenizer.safe_chat_ids(messages + [{"role": "assistant", "content": answer}], add_generation_prompt=False)
    return full[:MAX_LEN], len(prompt)


def loss_of(model, batch: list[tuple[list[int], int]], pad_id: int, device) -> torch.Tensor:
    inputs = _batch_inputs([ids for ids, _ in batch], pad_id, device)
    labels = inputs.ids.clone()
    for i, (ids, start) in enumerate(batch):
        labels[i, :start] = -100  # the prompt is not learned
        labels[i, len(ids) :] = -100  # nor the padding
    with torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda"):
        logits = model.logits(model(inputs))  # (B, T, V)
    return torch.nn.functional.cross_entropy(
        logits[:, :-1].float().reshape(-1, logits.shape[-1]), labels[:, 1:].reshape(-1), ignore_index=-100
    )


def start_from_adapters(model, directory: Path) -> None:
    """Load a saved adapter folder's low-rank weights into the model's LoRA layers (same targets and rank)."""
    from safetensors.torch import load_file

    if not (directory / ADAPTERS_FILE).is_file():
        raise SystemExit(f"--init: {directory / ADAPTERS_FILE} does not exist.")
    state = load_file(str(directory / ADAPTERS_FILE))
    wanted = set(adapter_state(model))
    if set(state) != wanted:
        raise SystemExit(f"{directory} holds other adapters than --rank and the targets make ({len(state)} tensors).")
    model.load_state_dict(state, strict=False)


def plot_losses(losses: list[float], path: Path, title: str = "SmolLM2 notes adapters") -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axis = plt.subplots(figsize=(6, 3.5))
    axis.plot(losses, alpha=0.35, label="step")
    window = max(1, len(losses) // 20)
    smooth = [
        sum(losses[max(0, i - window) : i + 1]) / len(losses[max(0, i - window) : i + 1]) for i in range(len(losses))
    ]
    axis.plot(smooth, label=f"mean of {window}")
    axis.set(xlabel="step", ylabel="cross-entropy (answer tokens)", title=title)
    axis.legend()
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--lr", type=float, default=3e-4)
    parser.add_argument("--rank", type=int, default=8)
    parser.add_argument("--chat-share", type=float, default=0.35, help="share of each batch from self-distillation")
    parser.add_argument("--chat-prompts", type=int, default=160)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    parser.add_argument("--runs", type=Path, default=ROOT / "runs" / "notes")
    parser.add_argument(
        "--init", type=Path, default=None, help="start from the adapters in this folder (a further run of shipped ones)"
    )
    args = parser.parse_args(argv)
    torch.manual_seed(args.seed)
    device = torch.device(args.device)
    lm = load_smollm2(device, dtype=torch.float32)
    chat = distilled_chat(lm, chat_prompts(args.chat_prompts, args.seed), args.runs / "distilled.json")
    config = AdapterConfig(rank=args.rank, alpha=2.0 * args.rank, base_sha256=SMOLLM2_SHA256)
    params = add_lora(lm.model, config)
    optimizer = torch.optim.AdamW(params, lr=args.lr, weight_decay=0.0)
    state_path, losses, step = args.runs / "state.pt", [], 0
    if state_path.is_file():  # resume
        saved = torch.load(state_path, map_location=device)
        lm.model.load_state_dict(saved["adapters"], strict=False)
        optimizer.load_state_dict(saved["optimizer"])
        losses, step = saved["losses"], saved["step"]
        print(f"resuming at step {step}")
    elif args.init is not None:
        start_from_adapters(lm.model, args.init)
        print(f"starting from the adapters in {args.init}")
    from lab.data.notes_qa import notes_example

    rng = random.Random(f"{args.seed}/{step}")
    schedule = lambda s: min(1.0, (s + 1) / 20) * max(0.1, 1 - s / max(args.steps, 1))  # noqa: E731
    lm.model.train()
    started = time.monotonic()
    progress = tqdm(range(step, args.steps), desc="adapters", initial=step, total=args.steps)
    for step in progress:
        for group in optimizer.param_groups:
            group["lr"] = args.lr * schedule(step)
        n_chat = round(args.batch * args.chat_share)
        examples = [notes_example(rng) for _ in range(args.batch - n_chat)] + rng.sample(chat, n_chat)
        batch = [encode(lm.tokenizer, messages, answer) for messages, answer in examples]
        loss = loss_of(lm.model, batch, lm.tokenizer.pad_id, device)
        optimizer.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        optimizer.step()
        losses.append(float(loss))
        progress.set_postfix(loss=f"{losses[-1]:.3f}")
        if (step + 1) % 50 == 0 or step + 1 == args.steps:
            args.runs.mkdir(parents=True, exist_ok=True)
            saved = {"adapters": adapter_state(lm.model), "optimizer": optimizer.state_dict()}
            torch.save({**saved, "losses": losses, "step": step + 1}, state_path)
    save_adapters(lm.model, config, args.out)
    args.runs.mkdir(parents=True, exist_ok=True)
    plot_losses(losses, args.runs / "loss.png")
    last = sum(losses[-10:]) / max(len(losses[-10:]), 1)
    print(f"{len(losses)} steps, last loss {last:.3f}, {time.monotonic() - started:.0f} s")
    print(f"adapters in {args.out}, loss curve {args.runs / 'loss.png'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

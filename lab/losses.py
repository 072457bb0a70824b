"""The training losses of a batch: the assistant tokens' cross-entropy, plus the scene probe's
(lab.scene_probe) and the grounding loss (lab.grounding), backpropagated in micro-batches of
similar length (lab.length_groups)."""

from __future__ import annotations

import contextlib

import torch
import torch.nn.functional as F

from engine.model import MultimodalModel
from engine.prompt import Prompt, collate
from lab.grounding import AttentionGrounding
from lab.length_groups import length_groups
from lab.scene_probe import SceneProbe


def batch_loss(
    model: MultimodalModel,
    prompts: list[Prompt],
    device: torch.device,
    probe: SceneProbe | None = None,
    targets: list | None = None,
) -> tuple[torch.Tensor, int, torch.Tensor | None]:
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


def accumulate_gradients(
    model: MultimodalModel,
    prompts: list[Prompt],
    device: torch.device,
    probe: SceneProbe | None,
    targets: list,
    grounding: AttentionGrounding | None = None,
    queries: list | None = None,
    grounding_weight: float = 1.0,
) -> tuple[float, float | None, float | None]:
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


@torch.no_grad()
def evaluate_loss(model: MultimodalModel, prompts: list[Prompt], batch_size: int, device) -> float:
    model.eval()
    total, count = 0.0, 0
    for start in range(0, len(prompts), batch_size):
        loss, n, _ = batch_loss(model, prompts[start : start + batch_size], device)
        total, count = total + loss.item() * n, count + n
    model.train()
    return total / max(count, 1)

"""Token generation: `prefill`, `decode_one_token`, `sample`, and the short loop `generate`.

    for tokens in generate(model, inputs, GenerationConfig(), stop_ids={end_id}):
        ...                               # tokens: (B,) next id per row (pad once a row is done)

The loop owns its cache and frees it in `finally`, so closing the generator (a stopped
stream) or setting `cancel` releases it at once; `active_caches()` counts the live ones.
Rows of a batch advance with their own positions, and finished rows are masked, so a
scheduler can batch sequences of different lengths.
"""

from __future__ import annotations

import secrets
import threading
import weakref
from collections.abc import Iterator

import torch

from engine.fusion import ModelInputs
from engine.model import MultimodalModel
from engine.types import GenerationConfig

_live_caches: weakref.WeakSet[torch.nn.Module] = weakref.WeakSet()


def active_caches() -> int:
    """How many generation caches exist right now (0 when nothing is generating)."""
    return len(_live_caches)


@torch.inference_mode()
def prefill(model: MultimodalModel, inputs: ModelInputs, cache: torch.nn.Module) -> torch.Tensor:
    """Run the whole prompt into the cache; next-token logits at each row's last real token: (B, V)."""
    hidden = model(inputs, cache)  # (B, T, C)
    last = hidden[torch.arange(hidden.shape[0], device=hidden.device), inputs.lengths - 1]  # (B, C)
    return model.logits(last).float()


@torch.inference_mode()
def decode_one_token(
    model: MultimodalModel, tokens: torch.Tensor, positions: torch.Tensor, cache: torch.nn.Module
) -> torch.Tensor:
    """tokens (B,) at positions (B,) → next-token logits (B, V)."""
    return model.step(tokens[:, None], positions[:, None], cache).float()


@torch.inference_mode()
def sample(
    logits: torch.Tensor,
    config: GenerationConfig,
    generator: torch.Generator | None = None,
    seen: torch.Tensor | None = None,
) -> torch.Tensor:
    """Pick one token per row from logits (B, V); `seen` (B, V) marks tokens to penalize."""
    if seen is not None and config.repetition_penalty != 1.0:
        penalized = torch.where(logits > 0, logits / config.repetition_penalty, logits * config.repetition_penalty)
        logits = torch.where(seen, penalized, logits)
    if config.temperature == 0:
        return logits.argmax(dim=-1)
    logits = logits / config.temperature
    if config.top_k:
        kth = torch.topk(logits, min(config.top_k, logits.shape[-1])).values[:, -1:]  # (B, 1)
        logits = logits.masked_fill(logits < kth, float("-inf"))
    if config.top_p < 1.0:
        sorted_logits, order = logits.sort(dim=-1, descending=True)
        probs = sorted_logits.softmax(dim=-1)
        outside = probs.cumsum(dim=-1) - probs > config.top_p  # keeps at least the top token
        logits = logits.scatter(-1, order, sorted_logits.masked_fill(outside, float("-inf")))
    probs = logits.softmax(dim=-1)
    return torch.multinomial(probs, 1, generator=generator)[:, 0]


def make_generator(seed: int | None, device: torch.device) -> torch.Generator:
    generator = torch.Generator(device=device)
    generator.manual_seed(seed if seed is not None else secrets.randbits(63))
    return generator


def generate(
    model: MultimodalModel,
    inputs: ModelInputs,
    config: GenerationConfig,
    stop_ids: set[int],
    cancel: threading.Event | None = None,
    pad_id: int = 0,
) -> Iterator[torch.Tensor]:
    """Yield the next token of every row, (B,), until all rows stop, hit a limit, or `cancel` is set."""
    batch = inputs.ids.shape[0]
    device = inputs.ids.device
    cache_len = min(model.config.max_seq_len, int(inputs.lengths.max()) + config.max_new_tokens)
    cache = model.new_cache(batch, cache_len)
    _live_caches.add(cache)
    try:
        generator = make_generator(config.seed, device)
        seen = None
        if config.repetition_penalty != 1.0:
            seen = torch.zeros(batch, model.config.vocab_size, dtype=torch.bool, device=device)
            seen.scatter_(1, inputs.ids, True)
        stops = torch.tensor(sorted(stop_ids), device=device)
        done = torch.zeros(batch, dtype=torch.bool, device=device)
        positions = inputs.lengths.clone()  # where each row's next token goes
        furthest = int(positions.max())  # = positions.max(), kept on the host: no sync per step
        logits = prefill(model, inputs, cache)
        for _ in range(config.max_new_tokens):
            tokens = sample(logits, config, generator, seen)
            tokens = torch.where(done, torch.full_like(tokens, pad_id), tokens)
            yield tokens
            done |= torch.isin(tokens, stops)
            if bool(done.all()) or (cancel is not None and cancel.is_set()):
                return
            if furthest >= cache_len:  # context window full
                return
            if seen is not None:
                seen[torch.arange(batch, device=device), tokens] = True
            logits = decode_one_token(model, tokens, positions, cache)
            positions += 1
            furthest += 1
    finally:
        _live_caches.discard(cache)
        del cache

"""Token ids → text pieces for a person: valid UTF-8 only, stop sequences honoured.

`stream_text` never yields text it would later take back: a tail that could be the start
of a stop sequence is held until it is known not to be one.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Iterator

import torch

from engine.tokenizer import ChatTokenizer
from engine.types import ReplyInfo


def _held_back(text: str, stops: tuple[str, ...]) -> int:
    """Length of the longest tail of `text` that is a proper prefix of some stop sequence."""
    longest = 0
    for stop in stops:
        for size in range(min(len(stop) - 1, len(text)), longest, -1):
            if text.endswith(stop[:size]):
                longest = size
                break
    return longest


def stream_text(
    tokens: Iterable[torch.Tensor],
    tokenizer: ChatTokenizer,
    stops: tuple[str, ...],
    info: ReplyInfo,
    started: float | None = None,
    end_ids: set[int] | None = None,
) -> Iterator[str]:
    """Text pieces of row 0 of `tokens` (each (B,)); fills `info` as it goes. `end_ids` (the ids
    that end a reply) default to the built-in tokenizer's end and eos ids."""
    started = time.perf_counter() if started is None else started
    end_ids = end_ids if end_ids is not None else {tokenizer.end_id, tokenizer.eos_id}
    decoder = tokenizer.incremental_decoder()
    pending = ""
    info.finish_reason = "length"
    token_iter = iter(tokens)
    try:
        for step in token_iter:
            if info.time_to_first_token_s is None:
                info.time_to_first_token_s = time.perf_counter() - started
            token = int(step[0])
            if token in end_ids:
                info.finish_reason = "stop"
                break
            info.new_tokens += 1
            pending += decoder.push(token)
            hits = [i for i in (pending.find(s) for s in stops) if i >= 0]
            if hits:
                info.finish_reason = "stop"
                pending = pending[: min(hits)]
                break
            keep = _held_back(pending, stops)
            ready, pending = pending[: len(pending) - keep], pending[len(pending) - keep :]
            if ready:
                yield ready
        else:
            pending += decoder.flush().rstrip("\ufffd")  # a character cut off by max tokens
        if pending:
            yield pending
    finally:
        close = getattr(token_iter, "close", None)
        if close is not None:
            close()  # frees the generation cache at once
        info.total_time_s = time.perf_counter() - started

"""Continuous batching: one thread owns a model and decodes every reply to it as one batch.

    scheduler = Scheduler(model, stop_ids={end_id}, pad_id=0, config=SchedulerConfig(slots=8))
    for tokens in scheduler.generate(inputs, GenerationConfig(), cancel=event):
        ...                      # tokens: (1,), as engine.generation.generate yields for one row
    scheduler.close()

Each reply gets a slot (a row) of one preallocated KV cache. Between decode steps the thread
admits waiting replies into free slots (text-only prompts waiting together are prefilled in one
forward, a prompt with media on its own), then runs one decode step for every
active slot together and hands each reply its token; a reply that stops, reaches its limit,
is cancelled (its `cancel` set or its generator closed) or fails leaves at once, and its slot
takes the next waiting reply. Each reply samples with its own settings and generator.

Prefix cache: when a text-only reply ends, the keys and values of everything its slot read
(prompt and reply) are kept, keyed by those token ids, in an LRU of at most
`prefix_cache_mb`. A later prompt that starts with the same ids (the next turn of that
conversation, a regenerate) copies them into its slot and prefills only the rest; an edited
turn, another system prompt or another model (each model has its own scheduler) shares a
shorter prefix or none, so nothing stale is ever read. `stats` counts hits and reused tokens.

The cache is allocated on the first request and released after `idle_release_s` without
work, so memory returns to its baseline after a load.

Several models on one device share one thread (`DecodingThread`): LMBackend's base and adapted
models each have a scheduler, both driven by the same thread, one step of each in turn. On a
CPU that matters: a second thread decoding with its own OpenMP team makes libgomp put every
worker to sleep between parallel regions, and text replies then decoded at half speed for the
rest of the process once one picture had been answered (47 -> 23 tokens/s, SmolLM2-135M int8,
2 cores).
"""

from __future__ import annotations

import atexit
import ctypes
import queue
import threading
import time
import weakref
from collections import OrderedDict
from collections.abc import Iterator
from dataclasses import dataclass, field

import torch

from engine.cpu_threads import decoding_threads, use_cpu_threads
from engine.decoder import KVCache, TransformerCache
from engine.fusion import TEXT, ModelInputs
from engine.generation import decode_one_token, make_generator, prefill, sample
from engine.model import MultimodalModel
from engine.types import GenerationConfig

_END = object()  # put on a reply's queue when it is over
_OPEN: weakref.WeakSet[Scheduler] = weakref.WeakSet()  # closed at exit, before the interpreter tears torch down


@atexit.register
def _close_open_schedulers() -> None:
    for scheduler in list(_OPEN):
        scheduler.close()


def release_memory(device: torch.device) -> None:
    """Hand freed tensors' memory back to the system: the CUDA allocator's cache on a GPU; on
    Linux, glibc's free lists (large freed blocks can otherwise stay in the process)."""
    if device.type == "cuda":
        torch.cuda.empty_cache()
        return
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):  # not glibc: its allocator keeps what it keeps
        pass


@dataclass(frozen=True)
class SchedulerConfig:
    """How many replies decode together and how much memory their caches may take."""

    slots: int = 8  # replies decoded in one batch; the rest wait
    slot_len: int = 2048  # tokens (prompt + reply) one slot holds; longer replies decode on their own
    prefix_cache_mb: float = 256.0  # finished conversations' keys and values kept for their next turn
    idle_release_s: float = 10.0  # the batch cache is freed after this long without work
    first_capacity: int = 256  # positions the batch cache starts with; it doubles up to slot_len as rows grow
    admit_at_once: int = 8  # waiting replies prefilled in one turn of the loop; a decode step comes between turns

    @classmethod
    def for_device(cls, device: torch.device | str) -> SchedulerConfig:
        """32 slots on a CPU (2 cores, SmolLM2-135M int4: 161 tokens/s at a batch of 8, 182 at 16,
        220 at 32: `python -m lab.bench --batch-sizes`; the cache grows with the longest row, so
        32 short conversations hold little), 32 on a GPU."""
        if torch.device(device).type == "cuda":
            return cls(slots=32, slot_len=4096, prefix_cache_mb=2048.0)
        return cls(slots=32)

    def __post_init__(self) -> None:
        if self.slots < 1 or self.slot_len < 2 or self.admit_at_once < 1:
            raise ValueError("a scheduler needs at least one slot of at least two tokens, admitting at least one reply")


@dataclass
class SchedulerStats:
    prefix_hits: int = 0
    prefix_misses: int = 0
    reused_tokens: int = 0  # prompt tokens copied from the prefix cache instead of prefilled
    prefilled_tokens: int = 0
    batched_prefills: int = 0  # replies whose prompt was read in one forward with others
    decode_steps: int = 0
    largest_batch: int = 0


class _RowView:
    """The rows `rows` of one layer's KVCache, written in place (same `update` as KVCache)."""

    update = KVCache.update

    def __init__(self, layer: KVCache, rows: slice):
        self.k, self.v = layer.k[rows], layer.v[rows]  # (b, KV, slot_len, D) views


class _CacheView:
    """What the decoder needs of a cache (`.layers`), over some rows of the batch cache."""

    def __init__(self, cache: TransformerCache, rows: slice):
        self.layers = [_RowView(layer, rows) for layer in cache.layers]


@dataclass
class _Reply:
    inputs: ModelInputs
    config: GenerationConfig
    cancel: threading.Event | None
    out: queue.SimpleQueue = field(default_factory=queue.SimpleQueue)
    closed: bool = False  # the consumer went away
    slot: int = -1
    fed: list[int] = field(default_factory=list)  # ids whose keys and values the slot holds, in order
    produced: int = 0
    next_token: int = 0  # sampled, handed out, not yet fed
    generator: torch.Generator | None = None
    seen: torch.Tensor | None = None  # (1, V) for the repetition penalty

    @property
    def over(self) -> bool:
        return self.closed or (self.cancel is not None and self.cancel.is_set())

    @property
    def text_only(self) -> bool:
        inputs = self.inputs
        return (
            inputs.images is None and not inputs.audio and not inputs.slots and bool((inputs.media_kind == TEXT).all())
        )


class PrefixCache:
    """Keys and values of finished conversations, keyed by their token ids; LRU within `budget_bytes`."""

    def __init__(self, budget_bytes: int):
        self.budget = budget_bytes
        self._entries: OrderedDict[tuple[int, ...], list[tuple[torch.Tensor, torch.Tensor]]] = OrderedDict()
        self._bytes = 0
        self._lock = threading.Lock()  # the scheduler's thread reads and writes; others may clear

    @staticmethod
    def _size(layers) -> int:
        return sum(k.numel() * k.element_size() + v.numel() * v.element_size() for k, v in layers)

    def longest(self, ids: list[int]) -> tuple[int, list[tuple[torch.Tensor, torch.Tensor]] | None]:
        """(how many leading ids of `ids` an entry holds, that entry's layers); (0, None) if none."""
        with self._lock:
            return self._longest(ids)

    def _longest(self, ids: list[int]):
        best, found = 0, None
        for key, layers in self._entries.items():
            if not key or key[0] != ids[0]:
                continue
            n = min(len(key), len(ids))
            same = next((i for i in range(n) if key[i] != ids[i]), n)
            if same > best:
                best, found, best_key = same, layers, key
        if found is not None:
            self._entries.move_to_end(best_key)
        return best, found

    def put(self, ids: list[int], layers: list[tuple[torch.Tensor, torch.Tensor]]) -> None:
        key = tuple(ids)
        size = self._size(layers)
        if size > self.budget:
            return
        with self._lock:
            self._put(key, layers, size)

    def _put(self, key, layers, size: int) -> None:
        for old in [k for k in self._entries if len(k) <= len(key) and key[: len(k)] == k]:
            self._bytes -= self._size(self._entries.pop(old))  # a shorter form of the same conversation
        self._entries[key] = layers
        self._bytes += size
        while self._bytes > self.budget:
            self._bytes -= self._size(self._entries.popitem(last=False)[1])

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()
            self._bytes = 0

    @property
    def nbytes(self) -> int:
        return self._bytes

    def __len__(self) -> int:
        return len(self._entries)


class DecodingThread:
    """One thread that runs the decode loop of every scheduler attached to it, a step of each in
    turn, so that models on one device share one OpenMP team (see the module's docstring). It
    starts with its first scheduler and ends when the last one is closed."""

    def __init__(self, name: str = "scheduler"):
        self.name = name
        self.wake = threading.Event()
        self._schedulers: list[Scheduler] = []
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None

    def attach(self, scheduler: Scheduler) -> None:
        with self._lock:
            if self._thread is not None and not self._thread.is_alive():
                self._thread = None  # every scheduler before this one was closed
            self._schedulers.append(scheduler)
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, daemon=True, name=self.name)
                self._thread.start()

    @property
    def ident(self) -> int | None:
        return self._thread.ident if self._thread is not None else None

    def _run(self) -> None:
        threads = decoding_threads()
        with self._lock:
            device = self._schedulers[0].model.norm.weight.device
        if threads and device.type == "cpu":
            use_cpu_threads(threads)  # engine.cpu_threads: the cores are this thread's
        with torch.inference_mode():
            while True:
                with self._lock:
                    schedulers = list(self._schedulers)
                busy = False
                for scheduler in schedulers:
                    if scheduler._closed:
                        scheduler._shut_down()
                        with self._lock:
                            self._schedulers.remove(scheduler)
                        continue
                    try:
                        busy = scheduler._tick() or busy
                    except Exception as error:  # noqa: BLE001 - that model's replies end; the others go on
                        scheduler._fail_all(error)
                with self._lock:
                    if not self._schedulers:
                        self._thread = None
                        return
                if not busy:
                    timeout = min(min(1.0, s.config.idle_release_s) for s in schedulers)
                    self.wake.wait(timeout=timeout)
                    self.wake.clear()


class Scheduler:
    """Runs every reply to `model` in one continuous batch, on its own thread or on a
    `DecodingThread` it shares with other models' schedulers."""

    def __init__(
        self,
        model: MultimodalModel,
        stop_ids: set[int],
        pad_id: int = 0,
        config: SchedulerConfig = SchedulerConfig(),
        name: str = "scheduler",
        thread: DecodingThread | None = None,
    ):
        if model.config.decoder != "transformer":
            raise ValueError("continuous batching needs a Transformer decoder (its cache has one row per reply)")
        self.model, self.stop_ids, self.pad_id, self.config = model, set(stop_ids), pad_id, config
        self.slot_len = min(config.slot_len, model.config.max_seq_len)
        self.prefix_cache = PrefixCache(int(config.prefix_cache_mb * 2**20))
        self.stats = SchedulerStats()
        self._waiting: queue.SimpleQueue[_Reply] = queue.SimpleQueue()
        self._closed = False
        self._stopped = threading.Event()  # set once the thread has ended this scheduler's replies
        self._cache: TransformerCache | None = None
        self._slots: list[_Reply | None] = [None] * config.slots
        self._idle_since = time.monotonic()
        self.thread = thread if thread is not None else DecodingThread(name)
        self._wake = self.thread.wake
        self.thread.attach(self)
        _OPEN.add(self)

    # ------------------------------------------------------------------ public

    def fits(self, inputs: ModelInputs, config: GenerationConfig) -> bool:
        """Whether the reply fits one slot (else decode it alone with engine.generation.generate)."""
        return inputs.ids.shape[0] == 1 and int(inputs.lengths[0]) + config.max_new_tokens <= self.slot_len

    def generate(
        self, inputs: ModelInputs, config: GenerationConfig, cancel: threading.Event | None = None
    ) -> Iterator[torch.Tensor]:
        """The reply's tokens, (1,) each, the stop token included, as engine.generation.generate
        yields for a batch of one; an error of this reply alone is raised here."""
        if self._closed:
            raise RuntimeError("the scheduler is closed")
        if not self.fits(inputs, config):
            raise ValueError(f"a reply to one prompt of at most {self.slot_len} tokens with its new tokens")
        reply = _Reply(inputs=inputs, config=config, cancel=cancel)
        self._waiting.put(reply)
        self._wake.set()
        try:
            while True:
                item = reply.out.get()
                if item is _END:
                    return
                if isinstance(item, BaseException):
                    raise item
                yield item
        finally:
            reply.closed = True  # the thread frees the slot at its next step
            self._wake.set()

    @property
    def active(self) -> int:
        """Replies in the batch right now."""
        return sum(r is not None for r in self._slots)

    @property
    def cache_allocated(self) -> bool:
        return self._cache is not None

    def close(self) -> None:
        """Stop taking replies; those in the batch or waiting get an error. Waits for the thread
        (at most 10 s) unless called from it."""
        self._closed = True
        self._wake.set()
        if threading.get_ident() != self.thread.ident:
            self._stopped.wait(timeout=10)

    # ------------------------------------------------------------------ on the thread

    def _tick(self) -> bool:
        """One turn of the loop: admit, then one decode step; False when there was nothing to decode."""
        self._drop_finished()
        self._admit()
        if self.active:
            self._step()
            self._idle_since = time.monotonic()
            return True
        if self._cache is not None and time.monotonic() - self._idle_since >= self.config.idle_release_s:
            self._cache = None
            release_memory(self.model.norm.weight.device)  # memory back to its baseline
        return False

    def _fail_all(self, error: BaseException) -> None:
        for index, reply in enumerate(self._slots):
            if reply is not None:
                self._finish(index, error, keep=False)
        self._cache = None  # what it held may be half written

    def _shut_down(self) -> None:
        for index, reply in enumerate(self._slots):
            if reply is not None:
                self._finish(index, RuntimeError("the scheduler was closed"))
        while not self._waiting.empty():
            self._waiting.get().out.put(RuntimeError("the scheduler was closed"))
        self._cache = None
        self._stopped.set()

    def _ensure_cache(self, length: int) -> TransformerCache:
        """The batch cache, with room for `length` positions in every slot (it grows as needed)."""
        if self._cache is None:
            self._cache = self.model.new_cache(self.config.slots, self.slot_len, capacity=self.config.first_capacity)
        self._cache.reserve(length)
        return self._cache

    def _drop_finished(self) -> None:
        for index, reply in enumerate(self._slots):
            if reply is not None and reply.over:
                self._finish(index, None)  # what it read stays valid for the next turn

    def _admit(self) -> None:
        """Waiting replies into free slots, at most `admit_at_once` a turn of the loop (the batch
        decodes a step between groups, so a crowd's first replies start before its last prompts
        are read): text-only ones prefilled together in one forward, a reply with media on its own."""
        free = [i for i, r in enumerate(self._slots) if r is None]
        taken: list[_Reply] = []
        while not self._waiting.empty() and len(taken) < min(len(free), self.config.admit_at_once):
            reply = self._waiting.get()
            if reply.over:
                reply.out.put(_END)
                continue
            taken.append(reply)
        text = [r for r in taken if r.text_only]
        alone = [r for r in taken if not r.text_only]
        if len(text) > 1 and self._prefill_together(free[: len(text)], text):
            free, text = free[len(text) :], []
        for index, reply in zip(free, text + alone):
            self._prefill_alone(index, reply)

    def _prefill_alone(self, index: int, reply: _Reply) -> None:
        try:
            self._prefill(index, reply)
        except Exception as error:  # noqa: BLE001 - this reply's error, the batch goes on
            self._slots[index] = None
            reply.out.put(error)

    def _match(self, ids: list[int]) -> tuple[int, list[tuple[torch.Tensor, torch.Tensor]] | None]:
        """(how many leading ids to copy from the prefix cache, their layers); (0, None) if none.
        At least one id is left to read, for its logits."""
        start, layers = self.prefix_cache.longest(ids)
        start = min(start, len(ids) - 1)
        return (start, layers) if start > 0 else (0, None)

    @staticmethod
    def _copy_prefix(cache, row: int, start: int, layers) -> None:
        """The first `start` positions of `layers` into row `row` of `cache`."""
        if layers is None:
            return
        for layer, (k, v) in zip(cache.layers, layers, strict=True):
            layer.k[row, :, :start] = k[:, :start]  # (KV, start, D)
            layer.v[row, :, :start] = v[:, :start]

    def _count(self, ids: list[int], start: int, text_only: bool = True) -> None:
        if text_only:
            self.stats.prefix_hits += start > 0
            self.stats.prefix_misses += start == 0
        self.stats.reused_tokens += start
        self.stats.prefilled_tokens += len(ids) - start

    def _prefill(self, index: int, reply: _Reply) -> None:
        inputs = reply.inputs
        ids = inputs.ids[0, : int(inputs.lengths[0])].tolist()
        cache = self._ensure_cache(len(ids))
        start, layers = self._match(ids) if reply.text_only else (0, None)
        self._copy_prefix(cache, index, start, layers)
        device = inputs.ids.device
        rest = ModelInputs(
            ids=inputs.ids[:, start : len(ids)],
            positions=torch.arange(start, len(ids), device=device)[None],
            lengths=torch.tensor([len(ids) - start], device=device),
            media_kind=inputs.media_kind[:, start : len(ids)],
            images=inputs.images,
            audio=inputs.audio,
            slots=inputs.slots,
        )
        self._count(ids, start, reply.text_only)
        logits = prefill(self.model, rest, _CacheView(cache, slice(index, index + 1)))  # (1, V)
        self._start(index, reply, ids, logits)

    def _prefill_together(self, indices: list[int], replies: list[_Reply]) -> bool:
        """Prefill text-only replies as one batch (each row its own prefix-cache reuse, right-padded)
        in a scratch cache, then copy each row into its slot. False (nothing started) if they
        cannot go together or the batch fails: each is then prefilled alone, so a bad request
        gets its own error."""
        prompts = [r.inputs.ids[0, : int(r.inputs.lengths[0])].tolist() for r in replies]
        matches = [self._match(ids) for ids in prompts]
        rest = max(len(ids) - start for ids, (start, _) in zip(prompts, matches))
        width = max(start for start, _ in matches) + rest  # every row's positions, padding included
        if width > self.slot_len:
            return False
        device = replies[0].inputs.ids.device
        B = len(replies)
        ids = torch.full((B, rest), self.pad_id, dtype=torch.long, device=device)  # (B, rest), right-padded
        positions = torch.zeros(B, rest, dtype=torch.long, device=device)
        scratch = self.model.new_cache(B, width)
        try:
            for row, (prompt, (start, layers)) in enumerate(zip(prompts, matches)):
                ids[row, : len(prompt) - start] = torch.tensor(prompt[start:], device=device)
                positions[row] = torch.arange(start, start + rest, device=device)
                self._copy_prefix(scratch, row, start, layers)
            lengths = torch.tensor([len(p) - start for p, (start, _) in zip(prompts, matches)], device=device)
            inputs = ModelInputs(ids=ids, positions=positions, lengths=lengths, media_kind=torch.zeros_like(ids))
            logits = prefill(self.model, inputs, scratch)  # (B, V)
        except Exception:  # noqa: BLE001 - retried one by one: only the bad request errors
            return False
        cache = self._ensure_cache(max(len(prompt) for prompt in prompts))
        for row, (index, reply, prompt, (start, _)) in enumerate(zip(indices, replies, prompts, matches)):
            n = len(prompt)
            for big, small in zip(cache.layers, scratch.layers):
                big.k[index, :, :n] = small.k[row, :, :n]  # (KV, n, D)
                big.v[index, :, :n] = small.v[row, :, :n]
            self._count(prompt, start)
            self.stats.batched_prefills += 1
            self._start(index, reply, prompt, logits[row : row + 1])
        return True

    def _start(self, index: int, reply: _Reply, ids: list[int], logits: torch.Tensor) -> None:
        """The reply holds slot `index`, which has read `ids`; hand out its first token from logits (1, V)."""
        config, device = reply.config, reply.inputs.ids.device
        reply.generator = make_generator(config.seed, device)
        if config.repetition_penalty != 1.0:
            reply.seen = torch.zeros(1, self.model.config.vocab_size, dtype=torch.bool, device=device)
            reply.seen[0, reply.inputs.ids[0, : len(ids)]] = True
        reply.slot, reply.fed = index, ids
        self._slots[index] = reply
        self._hand_out(index, reply, logits)

    def _hand_out(self, index: int, reply: _Reply, logits: torch.Tensor) -> None:
        """Sample the reply's next token from logits (1, V), give it, and end the reply if it is over."""
        token = sample(logits, reply.config, reply.generator, reply.seen)  # (1,)
        reply.out.put(token)
        reply.produced += 1
        value = int(token[0])
        reply.next_token = value
        if reply.seen is not None:
            reply.seen[0, value] = True
        if value in self.stop_ids or reply.produced >= reply.config.max_new_tokens or len(reply.fed) >= self.slot_len:
            self._finish(index, None)

    def _step(self) -> None:
        """One decode step for every active slot: rows 0 .. the last active one (an idle row in
        between reads a pad token at position 0 of its own row, which nothing uses)."""
        last = max(i for i, r in enumerate(self._slots) if r is not None)
        rows = self._slots[: last + 1]
        device = self.model.norm.weight.device
        tokens = torch.tensor([r.next_token if r else self.pad_id for r in rows], device=device)  # (b,)
        positions = torch.tensor([len(r.fed) if r else 0 for r in rows], device=device)  # (b,)
        self._ensure_cache(int(positions.max()) + 1)
        try:
            logits = decode_one_token(self.model, tokens, positions, _CacheView(self._cache, slice(0, last + 1)))
        except Exception as error:  # noqa: BLE001 - nothing of this step can be trusted
            for index, reply in enumerate(rows):
                if reply is not None:
                    self._finish(index, error, keep=False)
            return
        self.stats.decode_steps += 1
        self.stats.largest_batch = max(self.stats.largest_batch, sum(r is not None for r in rows))
        for index, reply in enumerate(rows):
            if reply is None:
                continue
            reply.fed.append(reply.next_token)
            if reply.over:
                self._finish(index, None)
                continue
            self._hand_out(index, reply, logits[index : index + 1])

    def _finish(self, index: int, error: BaseException | None, keep: bool = True) -> None:
        reply = self._slots[index]
        self._slots[index] = None
        if reply is None:
            return
        if keep and error is None and reply.text_only and self._cache is not None and len(reply.fed) > 1:
            n = len(reply.fed)
            layers = [(layer.k[index, :, :n].clone(), layer.v[index, :, :n].clone()) for layer in self._cache.layers]
            self.prefix_cache.put(reply.fed, layers)  # each (KV, n, D)
        reply.out.put(error if error is not None else _END)

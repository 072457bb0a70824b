"""Continuous batching (engine.scheduler): batched replies equal solo ones, cancel and errors stay
within their reply, the prefix cache hits and invalidates, memory is released when idle."""

from __future__ import annotations

import threading
import time

import pytest
import torch
from tiny_models import tiny_model

from engine.fusion import TEXT, ModelInputs
from engine.generation import generate
from engine.scheduler import Scheduler, SchedulerConfig
from engine.types import GenerationConfig

GREEDY = GenerationConfig(temperature=0, max_new_tokens=24)
NO_STOP: set[int] = set()


def inputs(ids: list[int]) -> ModelInputs:
    tensor = torch.tensor([ids])
    return ModelInputs(
        ids=tensor,
        positions=torch.arange(len(ids))[None],
        lengths=torch.tensor([len(ids)]),
        media_kind=torch.full_like(tensor, TEXT),
    )


def solo(model, ids, config=GREEDY, stop_ids=NO_STOP) -> list[int]:
    return [int(t[0]) for t in generate(model, inputs(ids), config, stop_ids)]


def prompt(seed: int, length: int) -> list[int]:
    generator = torch.Generator().manual_seed(seed)
    return torch.randint(5, 300, (length,), generator=generator).tolist()


@pytest.fixture(scope="module")
def model():
    return tiny_model(seed=1)


@pytest.fixture
def scheduler(model):
    scheduler = Scheduler(model, stop_ids=NO_STOP, config=SchedulerConfig(slots=4, slot_len=256))
    yield scheduler
    scheduler.close()


def run_together(scheduler, prompts, configs=None, delays=None) -> list[list[int] | BaseException]:
    results: list = [None] * len(prompts)

    def one(i):
        time.sleep(delays[i] if delays else 0)
        try:
            results[i] = [int(t[0]) for t in scheduler.generate(inputs(prompts[i]), (configs or {}).get(i, GREEDY))]
        except Exception as error:  # noqa: BLE001 - the test looks at it
            results[i] = error

    threads = [threading.Thread(target=one, args=(i,)) for i in range(len(prompts))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    return results


def test_batched_greedy_replies_equal_solo_ones(model, scheduler):
    prompts = [prompt(i, 3 + 7 * i) for i in range(6)]  # 6 replies, 4 slots: two wait, then join
    together = run_together(scheduler, prompts, delays=[0.0, 0.0, 0.01, 0.05, 0.1, 0.1])
    assert together == [solo(model, p) for p in prompts]
    assert scheduler.stats.largest_batch >= 2
    assert scheduler.stats.decode_steps < sum(len(r) for r in together)  # steps were shared


def test_each_reply_samples_with_its_own_settings(model, scheduler):
    prompts = [prompt(10, 9), prompt(11, 4), prompt(12, 15)]
    configs = {
        0: GenerationConfig(temperature=0.9, top_p=0.8, seed=7, max_new_tokens=20),
        1: GenerationConfig(temperature=0, max_new_tokens=5),
        2: GenerationConfig(temperature=1.2, top_k=20, repetition_penalty=1.3, seed=3, max_new_tokens=30),
    }
    together = run_together(scheduler, prompts, configs)
    assert together == [solo(model, p, configs[i]) for i, p in enumerate(prompts)]
    assert [len(r) for r in together] == [20, 5, 30]


def test_a_stop_token_ends_only_its_reply(model):
    free = solo(model, prompt(20, 6))
    stop = free[5]
    scheduler = Scheduler(model, stop_ids={stop}, config=SchedulerConfig(slots=2, slot_len=128))
    try:
        other = prompt(21, 11)
        together = run_together(scheduler, [prompt(20, 6), other])
    finally:
        scheduler.close()
    assert together[0] == free[: free.index(stop) + 1]  # the stop token is the last one given
    assert together[1] == solo(model, other, stop_ids={stop})


def test_cancel_mid_batch_frees_the_slot_at_once(model):
    scheduler = Scheduler(model, stop_ids=NO_STOP, config=SchedulerConfig(slots=2, slot_len=512))
    long = GenerationConfig(temperature=0, max_new_tokens=200)
    try:
        cancel = threading.Event()
        first = scheduler.generate(inputs(prompt(30, 5)), long, cancel)
        second = scheduler.generate(inputs(prompt(31, 5)), long)
        next(first), next(second)
        assert scheduler.active == 2
        waiting = scheduler.generate(inputs(prompt(32, 5)), GREEDY)
        got_third = threading.Event()
        threading.Thread(target=lambda: (next(waiting), got_third.set()), daemon=True).start()
        time.sleep(0.05)
        assert not got_third.is_set()  # both slots are taken
        cancel.set()
        assert got_third.wait(5)  # the cancelled reply's slot went to the waiting one
        assert list(first) == [] or len(list(first)) < 200
        second.close()  # closing the generator cancels too
        deadline = time.monotonic() + 5
        while scheduler.active > 1 and time.monotonic() < deadline:
            time.sleep(0.01)
        assert scheduler.active <= 1
    finally:
        scheduler.close()


def test_a_bad_request_in_a_full_batch_gets_its_error_while_the_others_finish(model, scheduler):
    bad = [5, 6, model.config.vocab_size + 50]  # an id outside the vocabulary
    prompts = [prompt(40, 8), bad, prompt(41, 13), prompt(42, 3)]
    together = run_together(scheduler, prompts, delays=[0, 0.02, 0, 0])
    assert isinstance(together[1], (IndexError, RuntimeError))
    for i in (0, 2, 3):
        assert together[i] == solo(model, prompts[i])


def hold_the_thread(monkeypatch):
    """The scheduler's next decode step waits until the returned event is set (replies pile up meanwhile)."""
    import engine.scheduler

    release, holding = threading.Event(), threading.Event()
    real = engine.scheduler.decode_one_token

    def held(*args, **kwargs):
        if not release.is_set():
            holding.set()
            release.wait(10)
        return real(*args, **kwargs)

    monkeypatch.setattr(engine.scheduler, "decode_one_token", held)
    return release, holding


def test_prompts_waiting_together_are_prefilled_in_one_forward(model, scheduler, monkeypatch):
    earlier = prompt(70, 20)
    first = run_together(scheduler, [earlier])[0]  # its keys and values go to the prefix cache
    release, holding = hold_the_thread(monkeypatch)
    long = GenerationConfig(temperature=0, max_new_tokens=40)
    blocker = scheduler.generate(inputs(prompt(71, 6)), long)
    next(blocker)
    assert holding.wait(5)  # the thread is inside a decode step: the next three wait together
    continued = earlier + first[:-1] + prompt(72, 5)  # the next turn of `earlier`: a prefix hit
    bad = [5, 6, model.config.vocab_size + 50]
    prompts = [prompt(73, 9), continued, prompt(74, 30)]
    results: list = [None] * 4

    def one(i, ids):
        try:
            results[i] = [int(t[0]) for t in scheduler.generate(inputs(ids), GREEDY)]
        except Exception as error:  # noqa: BLE001 - the test looks at it
            results[i] = error

    threads = [threading.Thread(target=one, args=(i, ids)) for i, ids in enumerate(prompts)]
    for thread in threads:
        thread.start()
    deadline = time.monotonic() + 5
    while scheduler._waiting.qsize() < 3 and time.monotonic() < deadline:
        time.sleep(0.01)
    hits = scheduler.stats.prefix_hits
    release.set()
    for thread in threads:
        thread.join(timeout=60)
    rest = list(blocker)
    assert scheduler.stats.batched_prefills == 3  # one forward read all three prompts
    assert scheduler.stats.prefix_hits == hits + 1  # `continued` copied its conversation's cache
    assert results[:3] == [solo(model, ids) for ids in prompts]
    assert len(rest) == 39
    # the same with a bad request among them: the batch is read again one by one, only it fails
    release, holding = hold_the_thread(monkeypatch)
    blocker = scheduler.generate(inputs(prompt(75, 6)), long)
    next(blocker)
    assert holding.wait(5)
    prompts = [prompt(76, 7), bad, prompt(77, 12)]
    threads = [threading.Thread(target=one, args=(i, ids)) for i, ids in enumerate(prompts)]
    for thread in threads:
        thread.start()
    while scheduler._waiting.qsize() < 3 and time.monotonic() < deadline + 5:
        time.sleep(0.01)
    release.set()
    for thread in threads:
        thread.join(timeout=60)
    list(blocker)
    assert isinstance(results[1], (IndexError, RuntimeError))
    assert results[0] == solo(model, prompts[0]) and results[2] == solo(model, prompts[2])


def test_the_next_turn_reuses_the_conversations_cache(model, scheduler):
    first_prompt = prompt(50, 40)
    first = run_together(scheduler, [first_prompt])[0]
    assert scheduler.stats.prefix_hits == 0 and len(scheduler.prefix_cache) == 1
    # the next turn: the whole first exchange (what the slot read), then new words
    second_prompt = first_prompt + first[:-1] + prompt(51, 9)
    second = run_together(scheduler, [second_prompt])[0]
    assert scheduler.stats.prefix_hits == 1
    assert scheduler.stats.reused_tokens == len(first_prompt) + len(first) - 1
    assert second == solo(model, second_prompt)
    # regenerate: the same prompt again reads all but its last token from the cache
    again = run_together(scheduler, [second_prompt])[0]
    assert again == second and scheduler.stats.prefix_hits == 2


def test_an_edited_turn_or_another_system_prompt_reuses_only_what_is_the_same(model, scheduler):
    base = prompt(60, 30)
    run_together(scheduler, [base])
    edited = base[:12] + [7, 8, 9] + base[15:]  # a change at token 12
    reused_before = scheduler.stats.reused_tokens
    assert run_together(scheduler, [edited])[0] == solo(model, edited)
    assert scheduler.stats.reused_tokens - reused_before == 12
    other_system = [3] + base[1:]  # differs from the first token: nothing to reuse
    hits = scheduler.stats.prefix_hits
    assert run_together(scheduler, [other_system])[0] == solo(model, other_system)
    assert scheduler.stats.prefix_hits == hits


def test_the_prefix_cache_stays_within_its_budget(model):
    per_token = 2 * model.config.n_layers * model.config.kv_heads * model.config.head_dim * 4  # fp32 k and v
    budget_mb = 100 * per_token / 2**20  # room for 100 tokens
    scheduler = Scheduler(model, NO_STOP, config=SchedulerConfig(slots=2, slot_len=128, prefix_cache_mb=budget_mb))
    try:
        for seed in range(5):
            run_together(scheduler, [prompt(70 + seed, 30)])  # 30 + 23 fed tokens each
        assert scheduler.prefix_cache.nbytes <= 100 * per_token
        assert len(scheduler.prefix_cache) == 1  # the most recent one
    finally:
        scheduler.close()


def test_memory_is_released_when_idle(model):
    scheduler = Scheduler(model, NO_STOP, config=SchedulerConfig(slots=2, slot_len=64, idle_release_s=0.2))
    try:
        run_together(scheduler, [prompt(80, 5)])
        deadline = time.monotonic() + 5
        while scheduler.cache_allocated and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not scheduler.cache_allocated
        assert run_together(scheduler, [prompt(80, 5)])[0] == solo(model, prompt(80, 5))  # and comes back
    finally:
        scheduler.close()


def test_a_reply_too_long_for_a_slot_is_refused_by_fits(model, scheduler):
    assert scheduler.fits(inputs(prompt(1, 10)), GREEDY)
    assert not scheduler.fits(inputs(prompt(1, 250)), GREEDY)
    with pytest.raises(ValueError):
        next(scheduler.generate(inputs(prompt(1, 250)), GREEDY))


def test_the_lstm_decoder_is_refused_by_name():
    with pytest.raises(ValueError, match="Transformer"):
        Scheduler(tiny_model(decoder="lstm"), NO_STOP)


def test_two_models_share_one_decoding_thread_and_each_answers_as_alone(model, monkeypatch):
    import engine.scheduler
    from engine.scheduler import DecodingThread

    other = tiny_model(seed=2)
    stepped_on: set[int] = set()
    real = engine.scheduler.decode_one_token

    def recorded(*args, **kwargs):
        stepped_on.add(threading.get_ident())
        return real(*args, **kwargs)

    monkeypatch.setattr(engine.scheduler, "decode_one_token", recorded)
    shared = DecodingThread("shared")
    config = SchedulerConfig(slots=2, slot_len=128)
    first = Scheduler(model, NO_STOP, config=config, thread=shared)
    second = Scheduler(other, NO_STOP, config=config, thread=shared)
    prompts = [prompt(90, 12), prompt(91, 7)]
    results: dict[str, list] = {}

    def ask(key, scheduler, ids):
        results[key] = [int(t[0]) for t in scheduler.generate(inputs(ids), GREEDY)]

    workers = [
        threading.Thread(target=ask, args=("first", first, prompts[0])),
        threading.Thread(target=ask, args=("second", second, prompts[1])),
    ]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(30)
    assert results["first"] == solo(model, prompts[0]) and results["second"] == solo(other, prompts[1])
    assert stepped_on == {shared.ident}  # both models stepped on one thread
    first.close()
    assert results["second"] == [int(t[0]) for t in second.generate(inputs(prompts[1]), GREEDY)]  # still served
    with pytest.raises(RuntimeError, match="closed"):
        list(first.generate(inputs(prompts[0]), GREEDY))
    second.close()
    deadline = time.monotonic() + 5
    while shared.ident is not None and time.monotonic() < deadline:  # the last one closed: the thread ends
        time.sleep(0.01)
    assert shared.ident is None
    again = Scheduler(model, NO_STOP, config=config, thread=shared)  # and starts again for a new one
    try:
        assert [int(t[0]) for t in again.generate(inputs(prompts[0]), GREEDY)] == results["first"]
    finally:
        again.close()


def test_an_unexpected_error_in_one_models_loop_ends_its_replies_and_not_the_shared_thread(model):
    from engine.scheduler import DecodingThread

    shared, config = DecodingThread("shared"), SchedulerConfig(slots=2, slot_len=128)
    broken = Scheduler(model, NO_STOP, config=config, thread=shared)
    other = tiny_model(seed=2)
    fine = Scheduler(other, NO_STOP, config=config, thread=shared)

    def step_that_breaks():
        raise RuntimeError("boom")

    broken._step = step_that_breaks  # a bug outside the guarded prefill and decode calls
    try:
        with pytest.raises(RuntimeError, match="boom"):
            list(broken.generate(inputs(prompt(95, 8)), GREEDY))
        assert broken.active == 0
        ids = prompt(96, 9)
        assert [int(t[0]) for t in fine.generate(inputs(ids), GREEDY)] == solo(other, ids)
    finally:
        broken.close()
        fine.close()


def test_the_batch_cache_starts_small_and_grows_with_its_longest_row(model):
    """A cache for 4 slots of 256 positions starts at 8 and grows (doubling, what it holds kept) as
    replies get longer; each reply equals its solo decoding."""
    grower = Scheduler(model, stop_ids=NO_STOP, config=SchedulerConfig(slots=4, slot_len=256, first_capacity=8))
    try:
        long_reply = GenerationConfig(temperature=0, max_new_tokens=40)
        prompts = [prompt(20, 5), prompt(21, 30), prompt(22, 12)]  # 30 > 8 positions from the start
        results = run_together(grower, prompts, configs={0: long_reply, 1: long_reply, 2: long_reply})
        assert results == [solo(model, p, long_reply) for p in prompts]
        assert 70 <= grower._cache.capacity <= 128  # the longest row read 30 + 40 positions
    finally:
        grower.close()


def test_a_crowd_is_admitted_a_group_at_a_time_with_decode_steps_between(model, monkeypatch):
    """Seven replies waiting together, three admitted a turn: three forwards of 3, 3 and 1 prompts
    with a decode step after each, so the first group's replies start before the last prompt is read."""
    import engine.scheduler

    grouped = Scheduler(model, stop_ids=NO_STOP, config=SchedulerConfig(slots=8, slot_len=256, admit_at_once=3))
    try:
        events: list[str] = []
        real_step, real_prefill = engine.scheduler.decode_one_token, engine.scheduler.prefill

        def counted_prefill(model, inputs, cache):
            events.append(f"read {len(inputs.ids)}")  # prompts in this forward
            return real_prefill(model, inputs, cache)

        monkeypatch.setattr(engine.scheduler, "prefill", counted_prefill)
        release, holding = threading.Event(), threading.Event()

        def step(*args, **kwargs):
            if not release.is_set():
                holding.set()
                release.wait(10)
            events.append("step")
            return real_step(*args, **kwargs)

        monkeypatch.setattr(engine.scheduler, "decode_one_token", step)
        blocker = grouped.generate(inputs(prompt(80, 6)), GenerationConfig(temperature=0, max_new_tokens=40))
        next(blocker)
        assert holding.wait(5)  # the thread is inside a decode step: the next seven wait together
        prompts = [prompt(81 + i, 8 + i) for i in range(7)]
        results: list = [None] * 7

        def one(i):
            results[i] = [int(t[0]) for t in grouped.generate(inputs(prompts[i]), GREEDY)]

        threads = [threading.Thread(target=one, args=(i,)) for i in range(7)]
        for thread in threads:
            thread.start()
        deadline = time.monotonic() + 5
        while grouped._waiting.qsize() < 7 and time.monotonic() < deadline:
            time.sleep(0.01)
        events.clear()
        release.set()
        for thread in threads:
            thread.join(timeout=60)
        list(blocker)
        reads = [e for e in events if e.startswith("read")]
        assert reads == ["read 3", "read 3", "read 1"]
        after_first = events.index("read 3")
        after_second = events.index("read 3", after_first + 1)
        assert "step" in events[after_first:after_second] and "step" in events[after_second : events.index("read 1")]
        assert results == [solo(model, p) for p in prompts]
    finally:
        grouped.close()

"""Streaming: growing replies, stop sequences, limits, UTF-8, cancelling, sampling options."""

import gc
import threading

import pytest
import torch
from tiny_models import tiny_backend, tiny_tokenizer

from engine.generation import active_caches, generate, sample
from engine.prompt import build_prompt, collate
from engine.streaming import stream_text
from engine.types import Conversation, GenerationConfig, ReplyInfo, Turn

GREEDY = GenerationConfig(max_new_tokens=40, temperature=0)


def ask(text="hello there, how are you?"):
    return Conversation("", [Turn("user", text)])


def raw_tokens(backend, config, conversation=None):
    """Every token generate() yields for row 0, with no stop ids at all."""
    inputs = collate([build_prompt(conversation or ask(), backend.tokenizer, backend.config)])
    return [int(t[0]) for t in generate(backend.model, inputs, config, stop_ids=set())]


def feed(text):
    """The token stream a model would produce for `text`, as generate() yields it."""
    return [torch.tensor([i]) for i in tiny_tokenizer().encode(text)]


@pytest.mark.parametrize("decoder", ["transformer", "lstm"])
def test_stream_pieces_grow_into_the_whole_reply(decoder):
    backend = tiny_backend(seed=3, decoder=decoder)
    info = ReplyInfo()
    pieces = list(backend.stream(ask(), GREEDY, info=info))
    tokens = raw_tokens(backend, GREEDY)
    end = next(
        (i for i, t in enumerate(tokens) if t in (backend.tokenizer.end_id, backend.tokenizer.eos_id)), len(tokens)
    )
    assert "".join(pieces) == backend.tokenizer.decode(tokens[:end]).rstrip("\ufffd")
    assert info.new_tokens == end and info.finish_reason == ("stop" if end < len(tokens) else "length")


def test_max_new_tokens_is_a_hard_limit():
    backend = tiny_backend()
    assert len(raw_tokens(backend, GenerationConfig(max_new_tokens=7, temperature=0))) == 7


def test_stop_sequence_ends_the_reply_before_it():
    tok = tiny_tokenizer()
    info = ReplyInfo()
    pieces = list(stream_text(feed("The circle is red. Is that speech?"), tok, ("Is that",), info))
    assert "".join(pieces) == "The circle is red. " and info.finish_reason == "stop"


def test_text_that_might_start_a_stop_sequence_is_held_back_not_taken_back():
    tok = tiny_tokenizer()
    shown = ""
    for piece in stream_text(feed("I am fine, thank you very much."), tok, ("thank me",), ReplyInfo()):
        shown += piece
        assert "I am fine, thank you very much.".startswith(shown)  # nothing ever retracted
    assert shown == "I am fine, thank you very much."


def test_stop_sequences_on_a_real_model_stream():
    backend = tiny_backend(seed=5)
    whole = "".join(backend.stream(ask(), GenerationConfig(max_new_tokens=60, temperature=0)))
    stop = whole[len(whole) // 2 : len(whole) // 2 + 2]
    assert len(stop) == 2
    cut = "".join(backend.stream(ask(), GenerationConfig(max_new_tokens=60, temperature=0, stop=(stop,))))
    assert cut == whole[: whole.find(stop)]


def test_pieces_are_never_broken_utf8():
    tok = tiny_tokenizer()
    text = "Ünïcödé tëxt, 日本語 and emoji 🎉 too."
    pieces = list(stream_text(feed(text), tok, (), ReplyInfo()))
    assert "".join(pieces) == text and all("\ufffd" not in p for p in pieces)
    assert len(pieces) > 3


def test_a_character_cut_by_the_token_limit_is_dropped_not_garbled():
    tok = tiny_tokenizer()
    ids = tok.encode("ok 🎈")  # not in the tokenizer's corpus: the emoji is byte tokens, " \xf0\x9f", "\x8e", "\x88"
    truncated = [torch.tensor([i]) for i in ids[:-1]]  # part of the emoji's bytes only
    assert "".join(stream_text(truncated, tok, (), ReplyInfo())) == "ok "  # the space kept, the half emoji dropped


def test_closing_the_stream_mid_reply_frees_the_cache():
    backend = tiny_backend()
    stream = backend.stream(ask(), GenerationConfig(max_new_tokens=200, temperature=0.9, seed=1))
    info_before = active_caches()
    next(stream)
    assert active_caches() == info_before + 1
    stream.close()
    gc.collect()
    assert active_caches() == info_before


def test_cancel_event_from_another_thread_stops_generation_and_frees_the_cache():
    backend = tiny_backend()
    cancel = threading.Event()
    info = ReplyInfo()
    produced = 0
    for _ in backend.stream(ask(), GenerationConfig(max_new_tokens=500, temperature=1.0, seed=2), cancel, info):
        produced += 1
        if produced == 3:
            threading.Thread(target=cancel.set).start()
    gc.collect()
    assert info.finish_reason == "cancelled" and info.new_tokens < 500 and active_caches() == 0


def test_same_seed_same_reply_and_other_seed_differs():
    backend = tiny_backend()
    config = GenerationConfig(max_new_tokens=30, temperature=1.0, seed=123)
    first = raw_tokens(backend, config)
    assert raw_tokens(backend, config) == first
    assert raw_tokens(backend, GenerationConfig(max_new_tokens=30, temperature=1.0, seed=124)) != first


def test_top_k_one_and_tiny_top_p_are_greedy():
    backend = tiny_backend()
    greedy = raw_tokens(backend, GenerationConfig(max_new_tokens=20, temperature=0))
    assert raw_tokens(backend, GenerationConfig(max_new_tokens=20, temperature=1.5, top_k=1, seed=9)) == greedy
    assert raw_tokens(backend, GenerationConfig(max_new_tokens=20, temperature=1.5, top_p=1e-6, seed=9)) == greedy


def test_repetition_penalty_demotes_seen_tokens():
    logits = torch.tensor([[2.0, 1.9, -1.0]])
    seen = torch.tensor([[True, False, False]])
    assert sample(logits, GenerationConfig(temperature=0), seen=seen).item() == 0
    assert sample(logits, GenerationConfig(temperature=0, repetition_penalty=1.2), seen=seen).item() == 1


def test_batch_generation_equals_one_by_one():
    backend = tiny_backend(seed=4)
    prompts = [ask("hello there"), ask("What color is the circle?"), ask("Is that speech or music?")]
    config = GenerationConfig(max_new_tokens=25, temperature=0)
    alone = ["".join(backend.stream(c, config)) for c in prompts]
    assert backend.generate_batch(prompts, config) == alone

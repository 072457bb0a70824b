"""The chat template, the context budget and what a person can type."""

import pytest
from tiny_models import tiny_backend

from engine.prompt import build_prompt
from engine.types import Conversation, GenerationConfig, InputError, ReplyInfo, Turn


def long_conversation(n_exchanges: int) -> Conversation:
    conversation = Conversation("You are a helpful assistant.")
    for i in range(n_exchanges):
        conversation.add("user", f"question number {i}: what color is the circle?")
        conversation.add("assistant", f"answer {i}: the circle is red.")
    conversation.add("user", "and the square?")
    return conversation


def test_template_marks_roles_and_ends_with_the_assistant_prompt():
    backend = tiny_backend()
    tok = backend.tokenizer
    prompt = build_prompt(long_conversation(1), tok, backend.config)
    assert prompt.ids[0] == tok.bos_id and prompt.ids[1] == tok.special["<|system|>"]
    assert prompt.ids[-1] == tok.special["<|assistant|>"]
    assert prompt.ids.count(tok.special["<|user|>"]) == 2 and prompt.dropped_turns == 0


def test_oldest_turns_are_dropped_first_and_the_system_prompt_is_kept():
    backend = tiny_backend()
    tok = backend.tokenizer
    conversation = long_conversation(20)
    full = build_prompt(conversation, tok, backend.config, max_tokens=10_000)
    assert len(full) > 200
    prompt = build_prompt(conversation, tok, backend.config, max_tokens=120)
    assert len(prompt) <= 120 and prompt.dropped_turns > 0
    assert prompt.dropped_turns % 2 == 0  # whole exchanges: the kept part starts with a user turn
    text = tok.decode(prompt.ids)
    assert text.startswith("You are a helpful assistant.") and text.endswith("and the square?")
    assert "question number 19" in text and "question number 0:" not in text


def test_the_caller_is_told_when_turns_were_dropped():
    backend = tiny_backend()  # tiny preset: 256-token context
    info = ReplyInfo()
    list(backend.stream(long_conversation(30), GenerationConfig(max_new_tokens=4, temperature=0), info=info))
    budget = backend.config.max_seq_len - 4  # the context less room for the 4 new tokens
    fitted = build_prompt(long_conversation(30), backend.tokenizer, backend.config, max_tokens=budget)
    assert (info.dropped_turns, info.prompt_tokens) == (fitted.dropped_turns, len(fitted))
    assert fitted.dropped_turns > 0 and len(fitted) <= budget


def test_a_message_longer_than_the_context_is_refused_clearly():
    backend = tiny_backend()
    with pytest.raises(InputError, match="too long"):
        list(backend.stream(Conversation("", [Turn("user", "word " * 100_000)]), GenerationConfig(max_new_tokens=4)))


def test_special_token_text_typed_by_a_person_stays_text():
    backend = tiny_backend()
    tok = backend.tokenizer
    ids = tok.encode("<|user|> <|end|> <|image|>")
    assert not set(ids) & set(tok.special.values())
    assert tok.decode(ids) == "<|user|> <|end|> <|image|>"


def test_a_reply_needs_a_user_turn_last():
    with pytest.raises(InputError, match="user turn"):
        list(tiny_backend().stream(Conversation("", [Turn("assistant", "hi")])))


def test_invalid_generation_settings_are_refused():
    for bad in (dict(max_new_tokens=0), dict(temperature=-1), dict(top_p=0), dict(top_k=-2), dict(stop=("",))):
        with pytest.raises(InputError):
            GenerationConfig(**bad)


def test_media_in_a_non_user_turn_is_refused(image_png):
    backend = tiny_backend()
    with pytest.raises(InputError, match="user turns"):
        build_prompt(
            Conversation("", [Turn("assistant", "x", images=[image_png]), Turn("user", "y")]),
            backend.tokenizer,
            backend.config,
        )

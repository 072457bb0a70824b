"""Every fusion mode runs with text+image+audio, text only, image only and audio only,
on real image and audio files, and what is shown changes what the model computes."""

import pytest
import torch
from tiny_models import tiny_backend

from engine.fusion import IMAGE
from engine.generation import prefill
from engine.prompt import build_prompt, collate
from engine.types import Conversation, GenerationConfig, ReplyInfo, Turn

COMBINATIONS = {
    "text+image+audio": dict(text="what is this?", image=True, audio=True),
    "text only": dict(text="hello there", image=False, audio=False),
    "image only": dict(text="", image=True, audio=False),
    "audio only": dict(text="", image=False, audio=True),
}


def first_logits(backend, conversation):
    prompt = build_prompt(conversation, backend.tokenizer, backend.config)
    inputs = collate([prompt])
    cache = backend.model.new_cache(1, len(prompt) + 1)
    return prefill(backend.model, inputs, cache)[0]


@pytest.mark.parametrize("fusion", ["concat", "sum", "gated"])
@pytest.mark.parametrize("combination", COMBINATIONS)
def test_fusion_mode_streams_a_reply(fusion, combination, image_png, speech_wav_16k):
    spec = COMBINATIONS[combination]
    backend = tiny_backend(fusion=fusion)
    turn = Turn(
        "user",
        spec["text"],
        images=[image_png] if spec["image"] else [],
        audio=[speech_wav_16k] if spec["audio"] else [],
    )
    info = ReplyInfo()
    pieces = list(
        backend.stream(Conversation("", [turn]), GenerationConfig(max_new_tokens=8, temperature=0), info=info)
    )
    assert all(isinstance(p, str) for p in pieces)
    assert info.time_to_first_token_s is not None and info.finish_reason in ("stop", "length")
    assert info.new_tokens <= 8 and (info.new_tokens == 8) == (info.finish_reason == "length")


@pytest.mark.parametrize("fusion", ["concat", "sum", "gated"])
def test_the_image_and_the_audio_change_the_prediction(fusion, image_png, image_gif_animated, speech_wav_16k, tone_wav):
    backend = tiny_backend(fusion=fusion)
    base = first_logits(backend, Conversation("", [Turn("user", "what?", images=[image_png], audio=[speech_wav_16k])]))
    other_image = first_logits(
        backend, Conversation("", [Turn("user", "what?", images=[image_gif_animated], audio=[speech_wav_16k])])
    )
    other_audio = first_logits(backend, Conversation("", [Turn("user", "what?", images=[image_png], audio=[tone_wav])]))
    assert not torch.allclose(base, other_image, atol=1e-5)
    assert not torch.allclose(base, other_audio, atol=1e-5)


def test_concat_places_one_placeholder_per_media_token(image_png, speech_wav_16k):
    backend = tiny_backend(fusion="concat")
    config, tok = backend.config, backend.tokenizer
    prompt = build_prompt(
        Conversation("", [Turn("user", "hi", images=[image_png, image_png], audio=[speech_wav_16k])]), tok, config
    )
    assert prompt.ids.count(tok.image_id) == 2 * config.image_tokens
    assert prompt.ids.count(tok.audio_id) == config.audio_tokens(prompt.audio[0].shape[-1])
    assert len(prompt.images) == 2 and len(prompt.audio) == 1


def test_sum_and_gated_use_one_slot_per_user_turn_with_media(image_png, speech_wav_16k):
    backend = tiny_backend(fusion="gated")
    tok = backend.tokenizer
    conversation = Conversation(
        "",
        [
            Turn("user", "look", images=[image_png]),
            Turn("assistant", "ok"),
            Turn("user", "and listen", audio=[speech_wav_16k]),
            Turn("assistant", "ok"),
            Turn("user", "thanks"),
        ],
    )
    prompt = build_prompt(conversation, tok, backend.config)
    assert prompt.ids.count(tok.media_id) == 2
    assert [(images, audio) for _, _, images, audio in prompt.slots] == [([0], []), ([], [0])]


@pytest.mark.parametrize("fusion", ["concat", "sum", "gated"])
def test_media_after_text_puts_the_media_between_the_question_and_the_end(fusion, image_png):
    backend = tiny_backend(fusion=fusion, media_after_text=True)
    tok = backend.tokenizer
    prompt = build_prompt(
        Conversation("", [Turn("user", "what color is the circle?", images=[image_png])]), tok, backend.config
    )
    user = prompt.ids.index(tok.special["<|user|>"])
    end = prompt.ids.index(tok.end_id, user)
    media = tok.image_id if fusion == "concat" else tok.media_id
    first_media = prompt.ids.index(media)
    assert tok.decode(prompt.ids[user + 1 : first_media]).endswith("what color is the circle?")
    assert set(prompt.ids[first_media:end]) == {media}
    if fusion != "concat":
        ((position, (start, stop), _, _),) = prompt.slots
        assert (
            position == first_media and stop == first_media and tok.decode(prompt.ids[start:stop]).endswith("circle?")
        )


@pytest.mark.parametrize("media_after_text", [False, True])
def test_only_media_after_text_lets_the_image_tokens_see_the_question(media_after_text, image_png):
    backend = tiny_backend(media_after_text=media_after_text)

    def image_states(question):
        prompt = build_prompt(
            Conversation("", [Turn("user", question, images=[image_png])]), backend.tokenizer, backend.config
        )
        inputs = collate([prompt])
        with torch.no_grad():
            hidden = backend.model(inputs)  # (1, T, C)
        return hidden[inputs.media_kind == IMAGE]  # (image_tokens, C)

    star, circle = image_states("what color is the star?"), image_states("what color is the circle?")
    assert torch.allclose(star, circle, atol=1e-6) != media_after_text

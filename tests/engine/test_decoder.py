"""Cached decoding (prefill + one-token steps) equals a full forward pass, for both decoders."""

import pytest
import torch
from tiny_models import tiny_model

from engine.fusion import AUDIO, IMAGE, MediaSlot, ModelInputs
from engine.generation import decode_one_token, prefill


def random_inputs(config, batch_lengths, seed=0, with_media=True):
    """Right-padded random ids; row 0 carries one image and one audio clip (as the fusion mode places them)."""
    g = torch.Generator().manual_seed(seed)
    width = max(batch_lengths)
    ids = torch.randint(10, config.vocab_size, (len(batch_lengths), width), generator=g)
    kinds = torch.zeros_like(ids)
    images, audio, slots = None, [], []
    if with_media:
        n_img, mel = config.image_tokens, torch.randn(config.n_mels, 50, generator=g)
        n_aud = config.audio_tokens(mel.shape[-1])
        if config.fusion == "concat":
            kinds[0, 2 : 2 + n_img] = IMAGE
            kinds[0, 2 + n_img : 2 + n_img + n_aud] = AUDIO
        else:
            slots = [MediaSlot(batch=0, position=2, text_span=(3, 12), images=[0], audio=[0])]
        images = torch.randn(1, 3, config.image_size, config.image_size, generator=g)
        audio = [mel]
    for row, length in enumerate(batch_lengths):
        ids[row, length:] = 0
    return ModelInputs(
        ids=ids,
        positions=torch.arange(width).expand(len(batch_lengths), width),
        lengths=torch.tensor(batch_lengths),
        media_kind=kinds,
        images=images,
        audio=audio,
        slots=slots,
    )


def prompt_part(inputs: ModelInputs, length: int) -> ModelInputs:
    B = inputs.ids.shape[0]
    return ModelInputs(
        ids=inputs.ids[:, :length],
        positions=inputs.positions[:, :length],
        lengths=torch.full((B,), length),
        media_kind=inputs.media_kind[:, :length],
        images=inputs.images,
        audio=inputs.audio,
        slots=inputs.slots,
    )


@pytest.mark.parametrize("decoder", ["transformer", "lstm"])
@pytest.mark.parametrize("fusion", ["concat", "sum", "gated"])
def test_cached_decoding_equals_full_forward(decoder, fusion):
    model = tiny_model(decoder=decoder, fusion=fusion)
    config = model.config
    total, prompt_len = 110, 90  # the prompt holds all 71 media tokens of the tiny config
    inputs = random_inputs(config, [total, total])
    with torch.no_grad():
        full = model.logits(model(inputs))  # (B, T, V)
        cache = model.new_cache(2, total)
        steps = [prefill(model, prompt_part(inputs, prompt_len), cache)]
        for position in range(prompt_len, total - 1):
            steps.append(decode_one_token(model, inputs.ids[:, position], torch.full((2,), position), cache))
    cached = torch.stack(steps, dim=1)  # (B, total - prompt_len, V)
    torch.testing.assert_close(cached, full[:, prompt_len - 1 : total - 1], atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("decoder", ["transformer", "lstm"])
def test_rows_of_different_lengths_decode_at_their_own_positions(decoder):
    """A batch of prompts of lengths 30 and 18 gives each row the logits it gets alone."""
    model = tiny_model(decoder=decoder)
    batch = random_inputs(model.config, [30, 18], with_media=False)
    with torch.no_grad():
        cache = model.new_cache(2, 40)
        first = prefill(model, batch, cache)
        nxt = torch.tensor([11, 12])
        second = decode_one_token(model, nxt, batch.lengths.clone(), cache)
        for row, length in enumerate([30, 18]):
            alone = random_inputs(model.config, [30, 18], with_media=False)
            ids = torch.cat([alone.ids[row : row + 1, :length], nxt[row].view(1, 1)], dim=1)
            single = ModelInputs(
                ids=ids,
                positions=torch.arange(length + 1)[None],
                lengths=torch.tensor([length + 1]),
                media_kind=torch.zeros_like(ids),
            )
            logits = model.logits(model(single))[0]
            torch.testing.assert_close(first[row], logits[length - 1], atol=1e-4, rtol=1e-4)
            torch.testing.assert_close(second[row], logits[length], atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_one_query_attention_equals_sdpa_with_grouped_heads_and_a_mask(dtype):
    from torch.nn import functional as F

    from engine.one_token import one_query_attention

    g = torch.Generator().manual_seed(0)
    B, H, KV, L, D = 3, 9, 3, 17, 16  # three query heads share each key/value head
    q = torch.randn(B, H, D, generator=g)
    k, v = (torch.randn(B, KV, L, D, generator=g).to(dtype) for _ in range(2))  # the cache's dtype
    positions = torch.tensor([16, 4, 0])  # each row sees the cache up to its own position
    allowed = (torch.arange(L) <= positions[:, None, None])[:, None]  # (B, 1, 1, L)
    expected = F.scaled_dot_product_attention(q[:, :, None], k.float(), v.float(), attn_mask=allowed, enable_gqa=True)
    got = one_query_attention(q, k, v, ~allowed)
    assert got.shape == (B, H * D) and got.dtype == torch.float32
    torch.testing.assert_close(got.view(B, H, 1, D), expected, atol=1e-5, rtol=1e-4)
    only_slot = v[2, :, 0].float().repeat_interleave(3, dim=0)  # row 2 sees one slot: its value, per head
    torch.testing.assert_close(got[2].view(H, D), only_slot)
    alone = one_query_attention(q[:1], k[:1], v[:1], None)  # one row reads every slot: no mask needed
    torch.testing.assert_close(alone, got[:1])

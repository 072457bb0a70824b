"""The grounding loss: which positions look where, that its attention is the model's, that it trains."""

from __future__ import annotations

import random

import pytest
import torch

from engine.config import preset
from engine.fusion import IMAGE
from engine.model import MultimodalModel
from engine.prompt import build_prompt, collate
from engine.tokenizer import ChatTokenizer
from engine.types import Conversation, InputError, Turn
from lab.data.dataset import Example
from lab.data.questions import describe
from lab.data.quiz import draw_quiz
from lab.data.scenes import Scene, Shape, random_scene, render_scene
from lab.grounding import AttentionGrounding, grounding_queries
from lab.losses import accumulate_gradients
from lab.train import TrainConfig

# one image token per cell of the scene grid: 12 px through two stride-2 stages -> 3x3
CONFIG = dict(image_size=12, image_channels=(16, 32))


def scene_example(scene: Scene, folder) -> Example:
    picture = folder / f"scene-{abs(hash(scene))}.png"
    render_scene(scene, size=48).save(picture)
    turns = [
        Turn("user", "What do you see?", images=[picture], created=0.0),
        Turn("assistant", describe(scene), created=0.0),
    ]
    return Example(
        "scene-test", Conversation("", turns), "describe", describe(scene), "scene", {"scene": scene.to_dict()}
    )


@pytest.fixture(scope="module")
def tokenizer():
    texts = [t.text for i in range(40) for t in draw_quiz_texts(random_scene(random.Random(i)))]
    return ChatTokenizer.train(texts, vocab_size=400)


def draw_quiz_texts(scene):
    example = Example(
        "s",
        Conversation("", [Turn("user", "hi", images=["x.png"]), Turn("assistant", "ok")]),
        "describe",
        "ok",
        "scene",
        {"scene": scene.to_dict()},
    )
    return draw_quiz(example, random.Random(0), 6).conversation.turns


def test_each_answer_token_looks_at_the_cells_its_answer_is_about(tokenizer, tmp_path):
    config = preset("tiny", vocab_size=tokenizer.vocab_size, **CONFIG)
    scene = Scene(
        background="plain",
        colors=((255, 255, 255),),
        shapes=(
            Shape("star", "red", "large", 0, 0),
            Shape("square", "red", "medium", 1, 2),
            Shape("circle", "blue", "small", 2, 1),
        ),
    )
    example = scene_example(scene, tmp_path)
    seen_types = set()
    for seed in range(40):
        drawn = draw_quiz(example, random.Random(seed), 4)
        prompt = build_prompt(drawn.conversation, tokenizer, config, add_generation_prompt=False)
        image = [i for i, kind in enumerate(prompt.media_kind) if kind == IMAGE]
        assert len(image) == 9
        queries = grounding_queries(prompt, drawn.answer_cells, config.image_tokens)
        replies = [t for t in drawn.conversation.turns if t.role == "assistant"]
        assert len(drawn.answer_cells) == len(replies)
        for reply, cells in zip(replies, drawn.answer_cells):
            if reply.text.startswith("A red star"):  # a description is about no one shape
                assert cells == ()
                continue
            if reply.text == "It is red.":
                assert cells in ((0,), (5,))  # two shapes are red: the star or the square
                continue
            if "star" in reply.text or reply.text in ("It is large.", "It is in the top left."):
                assert cells == (0,)
                seen_types.add("star")
            if reply.text in ("It is blue.", "It is a circle.", "It is at the bottom."):
                assert cells == (7,)
            if reply.text == "There are three shapes.":
                assert sorted(cells) == [0, 5, 7]
            if reply.text == "There are two red shapes.":
                assert sorted(cells) == [0, 5]
                seen_types.add("count")
        for position, keys in queries:
            assert prompt.target_mask[position + 1]  # it predicts a token of an answer
            assert all(prompt.media_kind[k] == IMAGE and k < position for k in keys)
        looked = {position + 1 for position, _ in queries}
        assert looked <= {i for i, target in enumerate(prompt.target_mask) if target}
    assert seen_types == {"star", "count"}


def test_prompts_without_the_picture_have_no_queries(tokenizer, tmp_path):
    config = preset("tiny", vocab_size=tokenizer.vocab_size, **CONFIG)
    drawn = draw_quiz(scene_example(random_scene(random.Random(5)), tmp_path), random.Random(1), 3)
    no_picture = Conversation("", [Turn(t.role, t.text) for t in drawn.conversation.turns])
    prompt = build_prompt(no_picture, tokenizer, config, add_generation_prompt=False)
    assert grounding_queries(prompt, drawn.answer_cells, config.image_tokens) == []
    with pytest.raises(ValueError, match="assistant turns"):
        with_picture = build_prompt(drawn.conversation, tokenizer, config, add_generation_prompt=False)
        grounding_queries(with_picture, drawn.answer_cells + ((1,),), config.image_tokens)


def test_its_attention_is_the_heads_attention_in_the_forward_pass(tokenizer, tmp_path):
    """weights @ values of that head == what scaled_dot_product_attention computed for it."""
    torch.manual_seed(0)
    model = MultimodalModel(preset("tiny", vocab_size=tokenizer.vocab_size, **CONFIG)).eval()
    drawn = [draw_quiz(scene_example(random_scene(random.Random(i)), tmp_path), random.Random(i), 3) for i in range(3)]
    prompts = [build_prompt(d.conversation, tokenizer, model.config, add_generation_prompt=False) for d in drawn]
    grounding = AttentionGrounding(model.config, layer=1, head=2)
    attention = model.decoder.blocks[1].attention
    mixed = []
    hook = attention.out.register_forward_pre_hook(lambda module, args: mixed.append(args[0]))
    with torch.no_grad(), grounding.watch(model):
        model(collate(prompts))
    hook.remove()
    D, C = model.config.head_dim, model.config.d_model
    values = grounding._qkv[-1][..., 2 * C + 2 * D : 2 * C + 3 * D]  # (B, T, D) of head 2
    rows = torch.tensor([0, 1, 2, 2])
    positions = torch.tensor([len(prompts[0]) - 1, 20, 5, len(prompts[2]) - 1])
    weights = grounding.weights(rows, positions)  # (4, T)
    assert torch.allclose(weights.sum(-1), torch.ones(4))
    assert (weights[2, 6:] == 0).all()  # causal
    expected = mixed[0][rows, positions, 2 * D : 3 * D]
    torch.testing.assert_close(torch.einsum("nt,ntd->nd", weights, values[rows]), expected, rtol=1e-4, atol=1e-5)


def test_training_with_it_moves_the_heads_attention_onto_the_asked_shape(tokenizer, tmp_path):
    torch.manual_seed(0)
    model = MultimodalModel(preset("tiny", vocab_size=tokenizer.vocab_size, **CONFIG))
    drawn = [draw_quiz(scene_example(random_scene(random.Random(i)), tmp_path), random.Random(i), 4) for i in range(8)]
    prompts = [build_prompt(d.conversation, tokenizer, model.config, add_generation_prompt=False) for d in drawn]
    queries = [grounding_queries(p, d.answer_cells, model.config.image_tokens) for p, d in zip(prompts, drawn)]
    assert sum(map(len, queries)) > 20
    grounding = AttentionGrounding(model.config, layer=-1, head=0)
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3)
    losses = []
    for _ in range(40):
        optimizer.zero_grad()
        _, _, grounding_loss = accumulate_gradients(
            model, prompts, torch.device("cpu"), None, [None] * 8, grounding, queries, grounding_weight=1.0
        )
        optimizer.step()
        losses.append(grounding_loss)
    # at first the mass on the asked cells is about their share of the keys; then most of it
    assert losses[0] > 2.0 and losses[-1] < 0.5 * losses[0]
    assert torch.exp(-torch.tensor(losses[-1])) > 0.3


def test_it_refuses_models_and_settings_it_cannot_ground():
    for overrides in ({"decoder": "lstm"}, {"fusion": "sum"}, {"image_size": 32}):
        with pytest.raises(InputError, match="grounding loss needs"):
            AttentionGrounding(preset("tiny", **{**CONFIG, **overrides}))
    with pytest.raises(InputError, match="a layer in"):
        AttentionGrounding(preset("tiny", **CONFIG), layer=2)
    with pytest.raises(InputError, match="scene_questions"):
        TrainConfig(grounding=1.0, scene_questions=1)
    with pytest.raises(InputError, match="grounding must be"):
        TrainConfig(grounding=-1.0, scene_questions=4)


def test_with_detached_keys_only_the_query_side_learns(tokenizer, tmp_path):
    """The keys' projection gets no gradient from the loss, the queries' does. (The image encoder
    still does either way: the query positions read the picture in the layers below.)"""
    torch.manual_seed(0)
    model = MultimodalModel(preset("tiny", vocab_size=tokenizer.vocab_size, **CONFIG))
    drawn = [draw_quiz(scene_example(random_scene(random.Random(i)), tmp_path), random.Random(i), 4) for i in range(4)]
    prompts = [build_prompt(d.conversation, tokenizer, model.config, add_generation_prompt=False) for d in drawn]
    queries = [grounding_queries(p, d.answer_cells, model.config.image_tokens) for p, d in zip(prompts, drawn)]
    qkv = model.decoder.blocks[1].attention.qkv.weight
    C, D = model.config.d_model, model.config.head_dim
    for detach, keys_move in ((False, True), (True, False)):
        grounding = AttentionGrounding(model.config, layer=1, head=0, detach_keys=detach)
        with grounding.watch(model):
            model(collate(prompts))
        loss, _ = grounding.loss(queries)
        model.zero_grad()
        loss.backward()
        assert qkv.grad[:D].abs().sum() > 0  # head 0's queries
        assert bool(qkv.grad[C : C + D].abs().sum() > 0) == keys_move  # head 0's keys

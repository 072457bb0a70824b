"""The concept head: its labels, its vectors, and that it survives a checkpoint (it learns:
tests/test_scene_probe.py)."""

import random

import pytest
import torch

from engine.concepts import ConceptHead
from engine.config import ModelConfig, preset
from engine.data.scenes import SHAPE_COLORS, SHAPES, random_scene, render_scene
from engine.fusion import IMAGE
from engine.loading import load_checkpoint, save_checkpoint
from engine.model import MultimodalModel
from engine.prompt import build_prompt, collate
from engine.scene_probe import CONCEPT_WORDS, concept_labels, concept_token_ids, scene_target
from engine.tokenizer import ChatTokenizer
from engine.types import CheckpointError, Conversation, Turn

GRID = {"image_size": 48, "image_channels": (16, 32, 32, 32)}  # 3x3 image tokens


@pytest.fixture(scope="module")
def tokenizer():
    texts = [f"It is a {kind}. It is {color}." for kind in SHAPES for color in SHAPE_COLORS] * 4
    return ChatTokenizer.train(texts, vocab_size=400)


def concept_model(tokenizer, **overrides) -> MultimodalModel:
    config = preset("tiny", vocab_size=tokenizer.vocab_size, image_concepts=concept_token_ids(tokenizer),
                    **GRID, **overrides)
    return MultimodalModel(config)


def test_labels_mark_each_cells_kind_and_colour_and_nothing_for_empty_or_text():
    scene = {"shapes": [{"kind": "star", "color": "red", "row": 0, "col": 2}],
             "word": {"text": "CAT", "row": 1}}
    labels = concept_labels(scene_target(scene)[None])  # (1, 9, K)
    assert labels.shape == (1, 9, len(CONCEPT_WORDS))
    assert {CONCEPT_WORDS[k] for k in labels[0, 2].nonzero().flatten().tolist()} == {"star", "red"}
    assert labels[0, [0, 1, 3, 4, 5, 6, 7, 8]].sum() == 0


def test_each_concept_is_its_words_own_embedding(tokenizer):
    ids = concept_token_ids(tokenizer)
    assert len(ids) == len(CONCEPT_WORDS) and all(ids)
    assert tokenizer.decode(list(ids[CONCEPT_WORDS.index("diamond")])).strip() == "diamond"
    model = concept_model(tokenizer)
    embedding = model.text_encoder.embedding.weight
    words = model.concepts.word_vectors(embedding)  # (K, d)
    red = CONCEPT_WORDS.index("red")
    torch.testing.assert_close(words[red], embedding[list(ids[red])].mean(0))
    # a token the head is sure shows a red thing and nothing else carries exactly "red"'s embedding
    with torch.no_grad():
        model.concepts.classify.weight.zero_()
        model.concepts.classify.bias.fill_(-30.0)
        model.concepts.classify.bias[red] = 30.0
    vectors = model.concepts(torch.randn(2, 9, model.image_encoder.out_dim), embedding)
    assert vectors.shape == (2, 9, model.config.d_model)
    torch.testing.assert_close(vectors[1, 4], words[red], atol=1e-6, rtol=1e-4)


def test_the_concept_vectors_reach_the_image_tokens_in_every_fusion(tokenizer, tmp_path):
    picture = tmp_path / "scene.png"
    render_scene(random_scene(random.Random("concepts/fusion")), 64).save(picture)
    conversation = Conversation(turns=[Turn("user", "What colour is it?", images=[picture])])
    for fusion in ("concat", "sum", "gated"):
        torch.manual_seed(0)
        model = concept_model(tokenizer, fusion=fusion).eval()
        inputs = collate([build_prompt(conversation, tokenizer, model.config)], torch.device("cpu"))
        with torch.no_grad():
            before = model.embed(inputs)
            model.concepts.gain.fill_(0.0)  # the same model without its concepts
            after = model.embed(inputs)
        changed = (before - after).abs().sum(-1)[0] > 0  # (T,)
        if fusion == "concat":
            assert changed.tolist() == (inputs.media_kind[0] == IMAGE).tolist()
        else:
            assert changed.sum() == 1  # the turn's one media slot


def test_a_checkpoint_with_concepts_loads_to_the_same_model(tokenizer, tmp_path):
    torch.manual_seed(0)
    model = concept_model(tokenizer)
    save_checkpoint(tmp_path / "model", model, tokenizer)
    loaded, _ = load_checkpoint(tmp_path / "model", device="cpu", dtype=torch.float32)
    assert loaded.config == model.config and loaded.config.image_concepts == concept_token_ids(tokenizer)
    for name, tensor in model.state_dict().items():
        torch.testing.assert_close(loaded.state_dict()[name], tensor, msg=name)
    torch.testing.assert_close(loaded.concepts.word_ids, model.concepts.word_ids)


def test_concept_ids_outside_the_vocabulary_or_empty_are_refused():
    with pytest.raises(ValueError, match="image_concepts"):
        preset("tiny", image_concepts=((5,), (600,)))
    with pytest.raises(ValueError, match="image_concepts"):
        preset("tiny", image_concepts=((5,), ()))
    with pytest.raises(CheckpointError, match="not a valid model config"):
        ModelConfig.from_dict({**preset("tiny").to_dict(), "image_concepts": [[5], [-1]]})
    with pytest.raises(ValueError, match="at least one token id"):
        ConceptHead(8, ((1,), ()))

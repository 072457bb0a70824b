"""Our image encoder and projector in front of a pretrained LM (engine.llm.vision), on a tiny
random Llama built here: the files, the image placeholders, and that the picture reaches the model."""

from __future__ import annotations

import json

import pytest
import torch
from PIL import Image, ImageDraw

from engine.backends.lm import LMBackend
from engine.fusion import IMAGE
from engine.llm import load_language_model
from engine.llm.tokenizer import IMAGE_MARK
from engine.llm.vision import VISION_CONFIG, VISION_FILE, VisionConfig, attach_vision, load_vision, save_vision
from engine.types import CheckpointError, Conversation, GenerationConfig, ReplyInfo, Turn
from tests.engine.llm.conftest import tiny_llama_folder


@pytest.fixture(scope="module")
def tiny_folder(tmp_path_factory):
    return tiny_llama_folder(tmp_path_factory.mktemp("tiny-llama"), tie=True, max_positions=512)


def vision_backend(folder) -> tuple[LMBackend, VisionConfig]:
    lm = load_language_model(folder, "cpu")
    torch.manual_seed(0)
    config = attach_vision(lm.model, VisionConfig(d_model=lm.model.config.d_model))
    return LMBackend(lm, name="tiny+vision", media_model=lm.model, vision=config), config


def picture(path, colour) -> str:
    image = Image.new("RGB", (320, 240), "white")
    ImageDraw.Draw(image).ellipse((60, 40, 220, 200), fill=colour)
    image.save(path)
    return str(path)


def test_saved_weights_load_back_equal_and_bad_files_are_refused(tiny_folder, tmp_path):
    backend, config = vision_backend(tiny_folder)
    saved = save_vision(backend.model, VisionConfig(**{**vars(config), "base_sha256": "abc"}), tmp_path)
    assert saved.name == VISION_FILE and config.tokens == 9
    fresh = load_language_model(tiny_folder, "cpu").model
    assert load_vision(fresh, tmp_path / "elsewhere") is None  # no file: no image path
    assert load_vision(fresh, tmp_path, base_sha256="abc").tokens == 9
    for key, value in backend.model.state_dict().items():
        if key.startswith(("image_encoder.", "fusion.project_image.")):
            assert torch.equal(fresh.state_dict()[key], value), key
    with pytest.raises(CheckpointError, match="another language model"):
        load_vision(fresh, tmp_path, base_sha256="def")
    (tmp_path / VISION_CONFIG).write_text(json.dumps({**json.loads((tmp_path / VISION_CONFIG).read_text()),
                                                      "image_channels": [16, 32, 64, 96]}))  # fmt: skip
    with pytest.raises(CheckpointError, match="does not fit"):
        load_vision(fresh, tmp_path)
    (tmp_path / VISION_FILE).write_bytes(b"not safetensors")
    with pytest.raises(CheckpointError, match="cannot be read"):
        load_vision(fresh, tmp_path)


def test_each_picture_becomes_its_image_tokens_and_typed_marks_are_text(tiny_folder, tmp_path):
    backend, config = vision_backend(tiny_folder)
    red, blue = picture(tmp_path / "red.png", (220, 0, 0)), picture(tmp_path / "blue.png", (0, 0, 220))
    conversation = Conversation(
        turns=[
            Turn(role="user", text="What is it?", images=[red]),
            Turn(role="assistant", text=f"A red circle.{IMAGE_MARK}"),
            Turn(role="user", text=f"And this one? {IMAGE_MARK}", images=[blue]),
        ]
    )
    inputs, media = backend._prompt_ids(conversation, GenerationConfig(max_new_tokens=8), ReplyInfo())
    assert media and inputs.images.shape == (2, 3, config.image_size, config.image_size)
    assert int((inputs.media_kind == IMAGE).sum()) == 2 * config.tokens  # the typed marks placed none
    assert int(inputs.lengths[0]) == inputs.ids.shape[1]
    ids, is_image = backend.tokenizer.chat_ids_with_images([{"role": "user", "content": f"!!{IMAGE_MARK}!!"}], 4)
    assert sum(is_image) == 4 and len(ids) == len(is_image)  # found even amid punctuation


def test_the_picture_reaches_the_model_through_the_image_tokens(tiny_folder, tmp_path):
    """Two pictures whose tools' findings are the same (a filled circle, colour names apart)
    still give different next-token logits only through the image tokens: with the projector
    zeroed they give the same ones."""
    backend, _ = vision_backend(tiny_folder)
    a, b = picture(tmp_path / "a.png", (200, 0, 0)), picture(tmp_path / "b.png", (230, 20, 20))  # both "red"

    def logits():
        rows = []
        for path in (a, b):
            conversation = Conversation(turns=[Turn(role="user", text="What is it?", images=[path])])
            inputs, _ = backend._prompt_ids(conversation, GenerationConfig(max_new_tokens=8), ReplyInfo())
            with torch.no_grad():
                rows.append(backend.media_model.logits(backend.media_model(inputs))[0, -1])
        return rows

    first, second = logits()
    assert not torch.allclose(first, second)
    with torch.no_grad():
        backend.media_model.fusion.project_image[-1].weight.zero_()
        backend.media_model.fusion.project_image[-1].bias.zero_()
    first, second = logits()
    assert torch.allclose(first, second)
    text = "".join(backend.stream(Conversation(turns=[Turn(role="user", text="Hi", images=[a])]),
                                  GenerationConfig(temperature=0, max_new_tokens=6)))  # fmt: skip
    assert isinstance(text, str)

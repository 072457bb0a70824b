"""Our image and audio encoders with their projectors in front of a pretrained LM
(engine.llm.perception), on a tiny random Llama built here: the files, the placeholders, and that
pictures and sounds reach the model through their tokens."""

from __future__ import annotations

import json
import wave

import numpy as np
import pytest
import torch
from PIL import Image, ImageDraw

from engine.backends.lm import LMBackend
from engine.fusion import AUDIO, IMAGE
from engine.llm import load_language_model
from engine.llm.perception import HearingConfig, VisionConfig, attach, load_hearing, load_vision, save_part
from engine.llm.tokenizer import AUDIO_MARK, IMAGE_MARK
from engine.types import CheckpointError, Conversation, GenerationConfig, ReplyInfo, Turn
from tests.engine.llm.conftest import tiny_llama_folder


@pytest.fixture(scope="module")
def tiny_folder(tmp_path_factory):
    return tiny_llama_folder(tmp_path_factory.mktemp("tiny-llama"), tie=True, max_positions=512)


def perceiving_backend(folder) -> LMBackend:
    lm = load_language_model(folder, "cpu")
    torch.manual_seed(0)
    width = lm.model.config.d_model
    vision, hearing = attach(lm.model, VisionConfig(d_model=width)), attach(lm.model, HearingConfig(d_model=width))
    return LMBackend(
        lm, name="tiny+vision", transcriber=lambda source: "(no speech)", media_model=lm.model,
        vision=vision, hearing=hearing,
    )  # fmt: skip


def picture(path, colour) -> str:
    image = Image.new("RGB", (320, 240), "white")
    ImageDraw.Draw(image).ellipse((60, 40, 220, 200), fill=colour)
    image.save(path)
    return str(path)


def tone(path, hz: float, seconds: float = 1.0) -> str:
    t = np.arange(int(16000 * seconds)) / 16000
    samples = (0.5 * np.sin(2 * np.pi * hz * t) * 32767).astype(np.int16)
    with wave.open(str(path), "wb") as out:
        out.setnchannels(1), out.setsampwidth(2), out.setframerate(16000)
        out.writeframes(samples.tobytes())
    return str(path)


def test_saved_parts_load_back_equal_and_bad_files_are_refused(tiny_folder, tmp_path):
    backend = perceiving_backend(tiny_folder)
    for config in (backend.vision, backend.hearing):
        save_part(backend.model, type(config)(**{**vars(config), "base_sha256": "abc"}), tmp_path)
    fresh = load_language_model(tiny_folder, "cpu").model
    assert load_vision(fresh, tmp_path / "elsewhere") is None  # no file: no image path
    assert load_vision(fresh, tmp_path, base_sha256="abc").tokens == 9
    assert load_hearing(fresh, tmp_path, base_sha256="abc").tokens(100) == 13
    for key, value in backend.model.state_dict().items():
        if key.startswith(("image_encoder.", "audio_encoder.", "fusion.project_")):
            assert torch.equal(fresh.state_dict()[key], value), key
    rows = [IMAGE, AUDIO]  # each part's row of the modality embedding (the text row is never added)
    assert torch.equal(fresh.fusion.modality.weight[rows], backend.model.fusion.modality.weight[rows])
    with pytest.raises(CheckpointError, match="another language model"):
        load_vision(fresh, tmp_path, base_sha256="def")
    described = tmp_path / "vision.json"
    described.write_text(json.dumps({**json.loads(described.read_text()), "image_channels": [16, 32, 64, 96]}))
    with pytest.raises(CheckpointError, match="does not fit"):
        load_vision(fresh, tmp_path)
    (tmp_path / "hearing.safetensors").write_bytes(b"not safetensors")
    with pytest.raises(CheckpointError, match="cannot be read"):
        load_hearing(fresh, tmp_path)


def test_each_picture_and_clip_becomes_its_tokens_and_typed_marks_are_text(tiny_folder, tmp_path):
    backend = perceiving_backend(tiny_folder)
    red, blue = picture(tmp_path / "red.png", (220, 0, 0)), picture(tmp_path / "blue.png", (0, 0, 220))
    sound = tone(tmp_path / "tone.wav", 440.0)
    conversation = Conversation(
        system_prompt=f"Be brief.{AUDIO_MARK}",
        turns=[
            Turn(role="user", text="What is it?", images=[red]),
            Turn(role="assistant", text=f"A red circle.{IMAGE_MARK}"),
            Turn(role="user", text=f"And these? {IMAGE_MARK}{AUDIO_MARK}", images=[blue], audio=[sound]),
        ],
    )
    inputs, adapted = backend._prompt_ids(conversation, GenerationConfig(max_new_tokens=8), ReplyInfo())
    assert adapted and inputs.images.shape == (2, 3, 48, 48) and len(inputs.audio) == 1
    assert int((inputs.media_kind == IMAGE).sum()) == 2 * 9  # the typed marks placed none
    assert int((inputs.media_kind == AUDIO).sum()) == backend.hearing.tokens(inputs.audio[0].shape[-1])
    backend.transcriber = lambda source: "hello there"  # a clip with words is told by its words
    spoken = Conversation(turns=[Turn(role="user", text="Who says it?", audio=[sound])])
    inputs, adapted = backend._prompt_ids(spoken, GenerationConfig(max_new_tokens=8), ReplyInfo())
    assert adapted and not inputs.audio and int((inputs.media_kind == AUDIO).sum()) == 0
    only_spoken = Conversation(turns=[Turn(role="user", audio=[sound])])  # its transcript, for the base weights
    assert backend._prompt_ids(only_spoken, GenerationConfig(max_new_tokens=8), ReplyInfo())[1] is False
    ids, kinds = backend.tokenizer.chat_ids_with_media([{"role": "user", "content": f"!!{IMAGE_MARK}!!"}], [4])
    assert kinds.count(IMAGE) == 4 and len(ids) == len(kinds)  # found even amid punctuation
    with pytest.raises(ValueError, match="marks"):
        backend.tokenizer.chat_ids_with_media([{"role": "user", "content": IMAGE_MARK}], [4, 4])


def test_pictures_and_sounds_reach_the_model_through_their_tokens(tiny_folder, tmp_path):
    """Two pictures with the same findings (both circles "red"), and two tones the recognizer
    hears nothing in, give different next-token logits; with the projectors zeroed, the same."""
    backend = perceiving_backend(tiny_folder)
    pairs = {
        "images": (picture(tmp_path / "a.png", (200, 0, 0)), picture(tmp_path / "b.png", (230, 20, 20))),
        "audio": (tone(tmp_path / "low.wav", 220.0), tone(tmp_path / "high.wav", 1760.0)),
    }

    def logits(kind):
        rows = []
        for path in pairs[kind]:
            conversation = Conversation(turns=[Turn(role="user", text="What is it?", **{kind: [path]})])
            inputs, adapted = backend._prompt_ids(conversation, GenerationConfig(max_new_tokens=8), ReplyInfo())
            assert adapted
            with torch.no_grad():
                rows.append(backend.media_model.logits(backend.media_model(inputs))[0, -1])
        return rows

    for kind, projector in (("images", "project_image"), ("audio", "project_audio")):
        first, second = logits(kind)
        assert not torch.allclose(first, second), kind
        with torch.no_grad():
            getattr(backend.media_model.fusion, projector)[-1].weight.zero_()
            getattr(backend.media_model.fusion, projector)[-1].bias.zero_()
        first, second = logits(kind)
        assert torch.allclose(first, second), kind
    conversation = Conversation(turns=[Turn(role="user", text="Hi", images=[pairs["images"][0]])])
    assert "".join(backend.stream(conversation, GenerationConfig(temperature=0, max_new_tokens=6))) is not None

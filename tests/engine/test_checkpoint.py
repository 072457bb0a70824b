"""Checkpoints: save → load gives identical outputs; every broken file is named in the error."""

import json
import shutil

import pytest
import torch
from tiny_models import tiny_backend, tiny_model, tiny_tokenizer

from engine.backends import load_backend
from engine.config import ModelConfig, preset
from engine.loading import load_checkpoint, resolve_device, save_checkpoint
from engine.tokenizer import ChatTokenizer
from engine.types import CheckpointError, Conversation, GenerationConfig, Turn

CONFIG = GenerationConfig(max_new_tokens=20, temperature=0.8, seed=7)


@pytest.fixture
def saved(tmp_path):
    return save_checkpoint(tmp_path / "model", tiny_model(seed=1), tiny_tokenizer())


@pytest.mark.parametrize("decoder", ["transformer", "lstm"])
def test_save_then_load_gives_identical_outputs(tmp_path, decoder, image_png, speech_wav_16k):
    backend = tiny_backend(seed=2, decoder=decoder, fusion="gated")
    save_checkpoint(tmp_path / "m", backend.model, backend.tokenizer)
    assert sorted(p.name for p in (tmp_path / "m").iterdir()) == ["config.json", "model.safetensors", "tokenizer.json"]
    loaded = load_backend(tmp_path / "m", device="cpu")
    assert loaded.config == backend.config
    conversation = Conversation("", [Turn("user", "what is this?", images=[image_png], audio=[speech_wav_16k])])
    assert "".join(loaded.stream(conversation, CONFIG)) == "".join(backend.stream(conversation, CONFIG))
    for name, tensor in backend.model.state_dict().items():
        assert torch.equal(tensor, loaded.model.state_dict()[name]), name


def test_config_json_is_the_dataclass(saved):
    data = json.loads((saved / "config.json").read_text())
    assert ModelConfig.from_dict(data) == tiny_model().config
    assert data["decoder"] == "transformer" and data["fusion"] == "concat"


def test_the_prompt_layout_is_saved_and_older_configs_keep_theirs(tmp_path, image_png):
    backend = tiny_backend(seed=3, media_after_text=True)
    saved = save_checkpoint(tmp_path / "after", backend.model, backend.tokenizer)
    loaded = load_backend(saved, device="cpu")
    assert loaded.config.media_after_text
    conversation = Conversation("", [Turn("user", "what is this?", images=[image_png])])
    assert "".join(loaded.stream(conversation, CONFIG)) == "".join(backend.stream(conversation, CONFIG))
    data = json.loads((saved / "config.json").read_text())
    del data["media_after_text"]  # as written before the field existed
    (saved / "config.json").write_text(json.dumps(data))
    assert not load_backend(saved, device="cpu").config.media_after_text


@pytest.mark.parametrize("missing", ["config.json", "model.safetensors", "tokenizer.json"])
def test_a_missing_file_is_named(saved, missing):
    (saved / missing).unlink()
    with pytest.raises(CheckpointError, match=missing.replace(".", r"\.") + ".*missing|missing.*" + missing):
        load_checkpoint(saved, device="cpu")


def test_corrupt_config_is_named(saved):
    (saved / "config.json").write_text("{not json")
    with pytest.raises(CheckpointError, match="config.json is corrupt"):
        load_checkpoint(saved, device="cpu")


def test_truncated_weights_are_named(saved):
    data = (saved / "model.safetensors").read_bytes()
    (saved / "model.safetensors").write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="model.safetensors is corrupt"):
        load_checkpoint(saved, device="cpu")


def test_corrupt_tokenizer_is_named(saved):
    (saved / "tokenizer.json").write_text('{"version": "1.0", "model": 3}')
    with pytest.raises(CheckpointError, match="tokenizer.json is corrupt"):
        load_checkpoint(saved, device="cpu")


def test_weights_that_do_not_match_the_config_are_named(saved):
    config = json.loads((saved / "config.json").read_text())
    config["d_model"] = 128
    (saved / "config.json").write_text(json.dumps(config))
    with pytest.raises(CheckpointError, match="does not match.*shapes that differ"):
        load_checkpoint(saved, device="cpu")


def test_weights_of_the_other_decoder_are_named(saved, tmp_path):
    lstm = save_checkpoint(tmp_path / "lstm", tiny_model(decoder="lstm"), tiny_tokenizer())
    shutil.copy(lstm / "model.safetensors", saved / "model.safetensors")
    with pytest.raises(CheckpointError, match="missing tensors.*unexpected tensors"):
        load_checkpoint(saved, device="cpu")


def test_a_tokenizer_from_another_model_is_named(saved):
    ChatTokenizer.train(
        ["some other text entirely"] * 50 + [chr(i) * 3 for i in range(300, 2000)], vocab_size=2000, min_frequency=1
    ).save(saved)
    with pytest.raises(CheckpointError, match="tokenizer.json has .* tokens but config.json allows"):
        load_checkpoint(saved, device="cpu")


def test_configs_from_newer_versions_or_with_unknown_fields_are_refused(saved):
    config = json.loads((saved / "config.json").read_text())
    (saved / "config.json").write_text(json.dumps({**config, "version": 99}))
    with pytest.raises(CheckpointError, match="newer version"):
        load_checkpoint(saved, device="cpu")
    (saved / "config.json").write_text(json.dumps({**config, "flux_capacitor": 1}))
    with pytest.raises(CheckpointError, match="flux_capacitor"):
        load_checkpoint(saved, device="cpu")


def test_no_model_directory_gives_a_clear_error(tmp_path):
    with pytest.raises(CheckpointError, match="No model at"):
        load_backend(tmp_path / "nowhere")


def test_device_auto_and_dtype_on_cpu(saved):
    model, _ = load_checkpoint(saved, device="auto")
    expected = "cuda" if torch.cuda.is_available() else "cpu"
    assert model.lm_head.weight.device.type == expected
    if expected == "cpu":
        assert model.lm_head.weight.dtype == torch.float32
        with pytest.raises(CheckpointError, match="no NVIDIA GPU"):
            resolve_device("cuda")


@pytest.mark.cuda
def test_on_cuda_the_model_stays_resident_in_half_precision(saved):
    if not torch.cuda.is_available():
        pytest.skip("needs an NVIDIA GPU (none on this machine)")
    backend = load_backend(saved, device="auto")
    weight = backend.model.lm_head.weight
    assert weight.is_cuda and weight.dtype in (torch.bfloat16, torch.float16)
    before = torch.cuda.memory_allocated()
    "".join(backend.stream(Conversation("", [Turn("user", "hello")]), CONFIG))
    assert backend.model.lm_head.weight.data_ptr() == weight.data_ptr()  # no per-request copy
    assert torch.cuda.memory_allocated() <= before + 1024  # the cache was freed


def test_presets_are_valid():
    for name in ("tiny", "small", "base"):
        assert preset(name).head_dim % 2 == 0

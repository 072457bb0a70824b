"""Turn preparation (engine.turns): media read and observed once per content, prompts built without I/O."""

import numpy as np
import pytest
from PIL import Image
from tiny_models import tiny_backend

from engine import observe, turns
from engine.prompt import build_prompt, prompt_from_turns
from engine.turns import Needs, prepare_turn, prepare_turns
from engine.types import Conversation, GenerationConfig, InputError, ReplyInfo, Turn


def noise_png(path, seed):
    """A picture no other test has shown (so no cache knows it yet)."""
    pixels = np.random.default_rng(seed).integers(0, 256, (48, 64, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(path)
    return path


def count_tool_calls(monkeypatch) -> dict:
    calls = {}
    for name in ("read_text", "count_faces", "dominant_colors"):
        real = getattr(observe, name)

        def counted(image, _real=real, _name=name):
            calls[_name] = calls.get(_name, 0) + 1
            return _real(image)

        monkeypatch.setattr(observe, name, counted)
    return calls


def test_an_image_in_two_turns_and_two_replies_is_observed_once(tmp_path, monkeypatch):
    calls = count_tool_calls(monkeypatch)
    photo = noise_png(tmp_path / "photo.png", seed=1)
    backend = tiny_backend(observations=("ocr", "faces", "colors"))
    conversation = Conversation(
        "",
        [
            Turn("user", "What is it?", images=[photo]),
            Turn("assistant", "Noise."),
            Turn("user", "And now?", images=[photo]),
        ],
    )
    for _ in range(2):  # two replies to the same conversation
        info = ReplyInfo()
        list(backend.stream(conversation, GenerationConfig(max_new_tokens=2, temperature=0), info=info))
        assert info.observations[0].startswith("image 1: text: ")
    assert calls == {"read_text": 1, "count_faces": 1, "dominant_colors": 1}
    again = prepare_turn(Turn("user", "", images=[photo.read_bytes()]), Needs(image_tools=("ocr", "faces", "colors")))
    assert again.observations == (info.observations[0],) and calls["read_text"] == 1  # bytes: same content


def test_the_prompt_is_built_from_prepared_turns_without_reading_files(tmp_path, speech_wav_16k):
    photo, clip = noise_png(tmp_path / "photo.png", seed=2), tmp_path / "clip.wav"
    clip.write_bytes(speech_wav_16k.read_bytes())
    backend = tiny_backend(observations=("colors",))
    conversation = Conversation("Be brief.", [Turn("user", "Look and listen.", images=[photo], audio=[clip])])
    expected = build_prompt(conversation, backend.tokenizer, backend.config)
    prepared = prepare_turns(conversation.turns, Needs.for_builtin(backend.config))
    photo.unlink()
    clip.unlink()
    prompt = prompt_from_turns("Be brief.", prepared, backend.tokenizer, backend.config)
    assert prompt.ids == expected.ids and prompt.observations == expected.observations
    assert len(prompt.images) == len(prompt.audio) == 1 and prompt.observations[0].startswith("image 1: colors: ")
    assert "[image 1: colors: " in backend.tokenizer.decode(prompt.ids)


def test_observation_lines_keep_their_trained_wording():
    prepared = turns.PreparedTurn(
        "user",
        "What is it?",
        (turns.PreparedImage(None, observation="text: EXIT; faces: 0; colors: red"),),
        (turns.PreparedAudio(None, heard="hello"),),
    )
    assert prepared.observations == ("image 1: text: EXIT; faces: 0; colors: red", "audio 1: heard: hello")
    assert prepared.text_with_notes() == (
        "[image 1: text: EXIT; faces: 0; colors: red]\n[audio 1: heard: hello]\nWhat is it?"
    )


def test_a_transcriber_hears_each_clip_once(tmp_path, speech_wav_16k):
    heard = []
    needs = Needs(transcriber=lambda source: heard.append(source) or " turn left ")
    clip = tmp_path / "clip.wav"
    clip.write_bytes(speech_wav_16k.read_bytes())
    first = prepare_turn(Turn("user", "", audio=[clip]), needs)
    second = prepare_turn(Turn("user", "", audio=[clip.read_bytes()]), needs)
    assert first.observations == second.observations == ("audio 1: heard: turn left",) and len(heard) == 1


def test_media_outside_user_turns_and_bad_files_are_refused(image_png, image_corrupt):
    with pytest.raises(InputError, match="user turns"):
        prepare_turn(Turn("assistant", "x", images=[image_png]), Needs(image_size=32))
    with pytest.raises(InputError, match="damaged"):
        prepare_turn(Turn("user", "x", images=[image_corrupt]), Needs(image_size=32))

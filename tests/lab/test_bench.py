"""`python -m lab.bench` on the tiny preset in a real subprocess: JSON keys and types, a PNG; no timings asserted."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
FAST = ["--preset", "tiny", "--prompt-tokens", "16", "--new-tokens", "8", "--repeats", "1", "--threads", "1"]


def bench(*args):
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    result = subprocess.run(
        [sys.executable, "-m", "lab.bench", *FAST, *map(str, args)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr
    return result


@pytest.fixture(scope="module")
def summary(tmp_path_factory):
    """One run serves every test: (JSON object, the table above it, the --plot path)."""
    plot = tmp_path_factory.mktemp("bench") / "bench.png"
    result = bench("--json", "--plot", plot)
    *table, last = result.stdout.rstrip("\n").split("\n")
    return json.loads(last), "\n".join(table), plot


def positive(value):
    return isinstance(value, (int, float)) and not isinstance(value, bool) and value > 0


def test_json_is_the_last_line_with_positive_numbers(summary):
    data, _, _ = summary
    for key in ("ttft_ms", "decode_tok_s", "hf_ttft_ms", "hf_decode_tok_s", "speedup_decode", "ttft_ratio"):
        assert positive(data[key]), key
    assert set(data["batch_tok_s"]) == {"1", "4", "8"}
    assert all(positive(v) for v in data["batch_tok_s"].values())


def test_both_models_have_the_same_text_path_and_the_run_is_described(summary):
    data, table, _ = summary
    params = data["params"]
    assert params["engine_text"] == params["hf"] and params["engine"] >= params["hf"]
    assert data["config"]["d_model"] == 64 and data["config"]["new_tokens"] == 8
    assert data["machine"]["device"] == "cpu" and data["machine"]["dtype"] == "float32"
    assert data["machine"]["torch_threads"] == 1
    assert data["config"]["step"] == "C++" and "step: C++" in table  # the step the engine decodes with here
    assert "decode tokens/s" in table and "time to first token" in table


def test_plot_writes_a_png(summary):
    _, _, plot = summary
    assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_bad_settings_exit_2_with_one_line(capsys):
    from lab.bench import main

    assert main(["--preset", "tiny", "--prompt-tokens", "300"]) == 2
    assert capsys.readouterr().err.strip() == "error: --prompt-tokens + --new-tokens must fit in max_seq_len=256"


@pytest.mark.slow
def test_smollm2_runs_the_same_real_weights_in_the_engine_and_in_transformers():
    """`--model smollm2`: both sides load the GGUF's weights (equal parameter counts, its real shape)."""
    result = bench("--model", "smollm2", "--json")
    data = json.loads(result.stdout.rstrip("\n").split("\n")[-1])
    assert data["config"]["source"] == "smollm2" and data["config"]["d_model"] == 576
    assert data["params"]["engine_text"] == data["params"]["hf"] == 134_515_008
    assert positive(data["decode_tok_s"]) and positive(data["hf_decode_tok_s"])

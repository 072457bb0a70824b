"""The load test: `python -m lab.bench_serve` against the real server with the shipped SmolLM2
model, bounded (1 and 4 streams of 16 tokens, a 3-turn conversation), 127.0.0.1 only.

Nothing here asserts a timing; it asserts that concurrent streams through `/v1` all finish
without an error, every one with its tokens, and that the server's memory after the idle wait
is not above what it held at the end of the load (the batch cache is released when idle).
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
NEW_TOKENS = 16

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def load(tmp_path_factory):
    plot = tmp_path_factory.mktemp("serve-bench") / "serve.png"
    command = [sys.executable, "-m", "lab.bench_serve", "--streams", "1,4", "--new-tokens", str(NEW_TOKENS)]
    command += ["--turns", "3", "--idle-s", "12", "--json", "--plot", str(plot)]
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    result = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-4000:]
    *table, last = result.stdout.rstrip("\n").split("\n")
    return json.loads(last), "\n".join(table), plot


def test_concurrent_streams_all_finish_with_their_tokens(load):
    data, table, _ = load
    assert [r["streams"] for r in data["rounds"]] == [1, 4]
    for r in data["rounds"]:
        assert r["errors"] == 0, r["error_messages"]
        assert r["tokens"] == r["streams"] * NEW_TOKENS  # "Write a few sentences…" runs past 16 tokens
        assert 0 < r["ttft_p50_s"] <= r["ttft_p95_s"] < r["wall_s"]
    assert "streams" in table and "x one" in table


def test_a_conversation_is_answered_at_every_turn_and_memory_is_released(load):
    data, _, plot = load
    assert len(data["turn_ttft_s"]) == 3 and all(t > 0 for t in data["turn_ttft_s"])
    memory = data["memory_mb"]
    assert memory["baseline"] > 100  # the 135M model is resident
    assert memory["idle"] <= memory["loaded"]
    assert plot.stat().st_size > 10_000

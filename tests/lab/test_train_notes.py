"""`python -m lab.train_notes` for a few steps (the full run is a command people run), and its resume."""

from __future__ import annotations

import json

import pytest
import torch

from engine.backends import SMOLLM2, default_specs
from engine.llm.adapters import load_adapter_config
from lab import train_notes


def test_smollm2_is_what_the_app_serves_first():
    assert default_specs()[0] == SMOLLM2


@pytest.mark.slow
def test_a_few_steps_write_adapters_a_loss_curve_and_resume(tmp_path, capsys):
    out, runs = tmp_path / "adapters", tmp_path / "runs"
    args = ["--steps", "2", "--batch", "2", "--chat-prompts", "4", "--out", str(out), "--runs", str(runs)]
    assert train_notes.main(args) == 0
    assert (out / "adapters.safetensors").stat().st_size > 100_000 and (runs / "loss.png").stat().st_size > 1000
    assert load_adapter_config(out).rank == 8
    assert len(json.loads((runs / "distilled.json").read_text())) == 4  # the base model's own replies
    assert train_notes.main(args[:1] + ["3"] + args[2:]) == 0  # one more step, from the saved state
    assert "resuming at step 2" in capsys.readouterr().out
    from safetensors.torch import load_file

    again, fresh = tmp_path / "again", tmp_path / "runs-again"  # further steps from saved adapters, at rate 0
    more = ["--steps", "1", "--batch", "2", "--chat-prompts", "4", "--lr", "0", "--init", str(out)]
    assert train_notes.main(more + ["--out", str(again), "--runs", str(fresh)]) == 0
    assert "starting from the adapters in" in capsys.readouterr().out
    before, after = load_file(str(out / "adapters.safetensors")), load_file(str(again / "adapters.safetensors"))
    assert before.keys() == after.keys() and all(torch.equal(before[k], after[k]) for k in before)
    with pytest.raises(SystemExit, match="does not exist"):  # a wrong --init folder is one line
        train_notes.main(more[:-1] + [str(tmp_path / "nowhere"), "--runs", str(tmp_path / "runs-none")])

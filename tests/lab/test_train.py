"""Training and evaluation on a small real dataset: outputs, determinism across a resume, errors."""

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from engine.loading import load_checkpoint, load_sampling
from engine.types import CheckpointError, InputError
from lab.data import BuildConfig, build_dataset
from lab.evaluate import main as evaluate_main
from lab.probe_check import probe_hits
from lab.train import TrainConfig, train

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    out = tmp_path_factory.mktemp("dataset")
    build_dataset(
        BuildConfig(
            out=out, scenes=12, sounds=6, photos=False, chitchat=True, cache_dir=tmp_path_factory.mktemp("sound_cache")
        )
    )
    return out


def tiny_run(dataset, out, steps, **overrides):
    return TrainConfig(
        data=str(dataset),
        out=str(out),
        preset="tiny",
        steps=steps,
        batch_size=6,
        eval_every=5,
        checkpoint_every=5,
        eval_examples=12,
        seed=3,
        **overrides,
    )


def test_training_writes_a_loadable_checkpoint_curves_and_learns(dataset, tmp_path):
    model_dir = train(tiny_run(dataset, tmp_path / "run", steps=30, lr=3e-3))
    model, tokenizer = load_checkpoint(model_dir, device="cpu")
    assert model.config.vocab_size == tokenizer.vocab_size
    for name in ("loss.png", "log.jsonl", "train_config.json", "last/state.json", "last/optimizer.pt"):
        assert (tmp_path / "run" / name).is_file(), name
    assert load_sampling(model_dir) == (0.0, 1.0)  # decoded greedily, as evaluation measures it
    held = [
        json.loads(line)["heldout_loss"]
        for line in (tmp_path / "run" / "log.jsonl").read_text().splitlines()
        if "heldout_loss" in line
    ]
    assert len(held) == 6 and held[-1] < held[0]


def test_an_interrupted_run_resumes_to_the_same_weights(dataset, tmp_path):
    whole = load_checkpoint(train(tiny_run(dataset, tmp_path / "whole", steps=10)), device="cpu")[0]
    train(tiny_run(dataset, tmp_path / "split", steps=5))  # "interrupted" after 5 steps
    resumed = load_checkpoint(train(tiny_run(dataset, tmp_path / "split", steps=10)), device="cpu")[0]
    for name, tensor in whole.state_dict().items():
        torch.testing.assert_close(resumed.state_dict()[name], tensor, msg=name)


def test_a_run_can_start_from_another_runs_model(dataset, tmp_path):
    source = load_checkpoint(train(tiny_run(dataset, tmp_path / "source", steps=4)), device="cpu")
    # lr 0: the fine-tuned model must still be exactly the one it started from
    tuned = load_checkpoint(
        train(tiny_run(dataset, tmp_path / "tuned", steps=1, lr=0.0, init_from=str(tmp_path / "source"))), device="cpu"
    )
    assert tuned[1].vocab_size == source[1].vocab_size and tuned[0].config == source[0].config
    for name, tensor in source[0].state_dict().items():
        torch.testing.assert_close(tuned[0].state_dict()[name], tensor, msg=name)
    with pytest.raises(CheckpointError, match="No model directory"):
        train(tiny_run(dataset, tmp_path / "other", steps=1, init_from=str(tmp_path / "missing")))


def test_the_lstm_and_other_fusions_train_too(dataset, tmp_path):
    model_dir = train(
        tiny_run(dataset, tmp_path / "lstm", steps=3, model_overrides={"decoder": "lstm", "fusion": "gated"})
    )
    config = json.loads((model_dir / "config.json").read_text())
    assert config["decoder"] == "lstm" and config["fusion"] == "gated"


def test_probe_check_counts_every_cell_of_the_held_out_scenes(dataset, tmp_path):
    train(tiny_run(dataset, tmp_path / "run", steps=2))
    read, hits = probe_hits(tmp_path / "run", dataset, limit=5)
    scenes = {}
    for line in (dataset / "heldout.jsonl").read_text().splitlines():
        example = json.loads(line)
        if example.get("meta", {}).get("scene") and len(scenes) < 5:
            scenes.setdefault(example["turns"][0]["images"][0], example["meta"]["scene"])
    shapes = sum(len(scene["shapes"]) for scene in scenes.values())
    assert scenes and read == len(scenes)
    assert hits["shape kind"][1] == hits["shape colour"][1] == shapes
    assert hits["empty or text"][1] == 9 * len(scenes) - shapes
    assert all(0 <= right <= of for right, of in hits.values())
    (tmp_path / "run" / "last" / "scene_probe.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match="scene_probe.pt is corrupt"):
        probe_hits(tmp_path / "run", dataset)
    (tmp_path / "run" / "last" / "scene_probe.pt").unlink()
    with pytest.raises(CheckpointError, match="scene_probe.pt is missing"):
        probe_hits(tmp_path / "run", dataset)


def test_evaluation_reports_every_metric(dataset, tmp_path, capsys):
    model_dir = train(tiny_run(dataset, tmp_path / "run", steps=2))
    assert (
        evaluate_main(["--model", str(model_dir), "--data", str(dataset), "--out", str(tmp_path / "eval"), "--json"])
        == 0
    )
    results = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert {"perplexity", "accuracy", "bleu", "rouge_l"} <= set(results)
    assert results["accuracy"] and all(0 <= v <= 1 for v in results["accuracy"].values())
    for qtype, tallies in results["by_reference"].items():  # colour/shape/count by how the shape is named
        asked = sum(tally["of"] for tally in tallies.values())
        assert qtype in ("color", "shape", "count") and asked and all(t["right"] <= t["of"] for t in tallies.values())
        assert sum(t["right"] for t in tallies.values()) == round(results["accuracy"][qtype] * asked)
    for name in ("evaluation.md", "evaluation.json", "evaluation.png"):
        assert (tmp_path / "eval" / name).is_file()


def test_evaluating_a_checkpoint_of_another_config_says_so(dataset, tmp_path, capsys):
    train(tiny_run(dataset, tmp_path / "a", steps=1))
    other = train(tiny_run(dataset, tmp_path / "b", steps=1, model_overrides={"fusion": "sum"}))
    assert evaluate_main(["--model", str(other), "--run", str(tmp_path / "a"), "--data", str(dataset)]) == 2
    assert "another config" in capsys.readouterr().err


def test_missing_data_and_corrupt_resume_state_are_clear_errors(dataset, tmp_path):
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    missing = subprocess.run(
        [
            sys.executable,
            "-m",
            "lab.train",
            "--data",
            str(tmp_path / "nothing"),
            "--out",
            str(tmp_path / "r"),
            "--preset",
            "tiny",
            "--steps",
            "1",
        ],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert missing.returncode == 2 and "Traceback" not in missing.stderr and "error:" in missing.stderr
    train(tiny_run(dataset, tmp_path / "c", steps=2))
    (tmp_path / "c" / "last" / "model.safetensors").write_bytes(b"garbage")
    corrupt = subprocess.run(
        [
            sys.executable,
            "-m",
            "lab.train",
            "--data",
            str(dataset),
            "--out",
            str(tmp_path / "c"),
            "--preset",
            "tiny",
            "--steps",
            "4",
        ],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert corrupt.returncode == 2 and "model.safetensors is corrupt" in corrupt.stderr


def test_the_scene_probe_flag_takes_true_or_false_and_refuses_anything_else(capsys):
    from lab.train import parse_args

    assert parse_args(["--scene-probe", "false"]).scene_probe is False
    assert parse_args(["--scene-probe", "yes"]).scene_probe is True
    with pytest.raises(SystemExit):
        parse_args(["--scene-probe", "maybe"])
    assert "expected true or false" in capsys.readouterr().err


def test_fresh_scene_quizzes_and_source_weights_train_and_resume_to_the_same_weights(dataset, tmp_path):
    # the tiny dataset is 810 chit-chat lines and 24 scene questions: draw mostly scenes
    options = {"scene_questions": 3, "source_weights": {"scene": 4.0, "chitchat": 0.1}}
    whole = load_checkpoint(train(tiny_run(dataset, tmp_path / "whole", steps=6, **options)), device="cpu")[0]
    train(tiny_run(dataset, tmp_path / "split", steps=3, **options))
    resumed = load_checkpoint(train(tiny_run(dataset, tmp_path / "split", steps=6, **options)), device="cpu")[0]
    for name, tensor in whole.state_dict().items():
        torch.testing.assert_close(resumed.state_dict()[name], tensor, msg=name)
    # the weights change which conversations are drawn, the quizzes what is asked about the scenes drawn
    plain = load_checkpoint(train(tiny_run(dataset, tmp_path / "plain", steps=6)), device="cpu")[0].state_dict()
    weighted = load_checkpoint(
        train(tiny_run(dataset, tmp_path / "weighted", steps=6, source_weights=options["source_weights"])), device="cpu"
    )[0].state_dict()
    assert any(not torch.equal(plain[key], tensor) for key, tensor in weighted.items())
    assert any(not torch.equal(weighted[key], tensor) for key, tensor in whole.state_dict().items())


def test_bad_quiz_and_weight_settings_are_refused(dataset, tmp_path, capsys):
    from lab.train import parse_args

    assert parse_args(["--source-weights", "scene=0.25, sound=2"]).source_weights == {"scene": 0.25, "sound": 2.0}
    with pytest.raises(SystemExit):
        parse_args(["--source-weights", "scene"])
    assert "SOURCE=WEIGHT" in capsys.readouterr().err
    for weights in ({"scene": -1}, {"scene": "a lot"}, ["scene", 0.25]):
        with pytest.raises(InputError, match="numbers >= 0"):
            TrainConfig(source_weights=weights)
    for questions in (0, "4"):
        with pytest.raises(InputError, match="at least 1"):
            TrainConfig(scene_questions=questions)
    nothing = {source: 0 for source in ("scene", "sound", "chitchat", "photo")}
    with pytest.raises(InputError, match="nothing"):
        train(tiny_run(dataset, tmp_path / "none", steps=1, source_weights=nothing))


def test_micro_batches_give_the_whole_batchs_gradient(dataset):
    """accumulate_gradients (length-grouped micro-batches) == one padded batch, probe included."""
    from engine.config import preset
    from engine.model import MultimodalModel
    from engine.prompt import build_prompt
    from engine.tokenizer import ChatTokenizer
    from lab.data import load_dataset
    from lab.length_groups import length_groups
    from lab.losses import accumulate_gradients, batch_loss
    from lab.scene_probe import SceneProbe, scene_target

    examples = load_dataset(dataset, "train")
    tokenizer = ChatTokenizer.train([t.text for e in examples for t in e.conversation.turns], vocab_size=400)
    torch.manual_seed(0)
    model = MultimodalModel(preset("tiny", vocab_size=tokenizer.vocab_size))
    probe = SceneProbe(model.config, model.image_encoder.out_dim)
    picked = [e for e in examples if e.source == "scene"][:4] + [e for e in examples if e.source != "scene"][:4]
    prompts = [build_prompt(e.conversation, tokenizer, model.config, add_generation_prompt=False) for e in picked]
    targets = [scene_target(e.meta.get("scene")) for e in picked]
    assert len(length_groups([len(p) for p in prompts])) > 1  # lengths differ enough to cut the batch

    def gradients():
        return [p.grad.clone() for p in [*model.parameters(), *probe.parameters()] if p.grad is not None]

    loss, n, probe_loss = batch_loss(model, prompts, torch.device("cpu"), probe, targets)
    (loss + probe_loss).backward()
    whole = gradients()
    model.zero_grad(), probe.zero_grad()
    micro_loss, micro_probe, _ = accumulate_gradients(model, prompts, torch.device("cpu"), probe, targets)
    assert micro_loss == pytest.approx(loss.item(), rel=1e-5) and micro_probe == pytest.approx(
        probe_loss.item(), rel=1e-5
    )
    for a, b in zip(whole, gradients(), strict=True):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-6)


def test_the_training_step_benchmark_times_both_ways(dataset, tmp_path, capsys):
    from lab.bench_train import main as bench_main

    model_dir = train(tiny_run(dataset, tmp_path / "run", steps=2))
    config = tmp_path / "bench.json"
    config.write_text(json.dumps({"data": str(dataset), "batch_size": 6, "scene_questions": 3}))
    assert bench_main(["--config", str(config), "--model", str(model_dir), "--steps", "3", "--json"]) == 0
    result = json.loads(capsys.readouterr().out.splitlines()[-1])
    assert set(result["median_s"]) == {"one padded batch", "length-grouped micro-batches"}
    assert result["real_share"]["length-grouped micro-batches"] > result["real_share"]["one padded batch"]
    assert result["speedup"] > 0


def test_a_run_with_the_grounding_loss_logs_it_and_ships_the_same_network(dataset, tmp_path, capsys):
    options = {
        "scene_questions": 3,
        "source_weights": {"scene": 4.0, "chitchat": 0.1},
        "model_overrides": {"image_size": 12, "image_channels": [16, 32]},
    }  # 3x3 image tokens
    grounded = train(tiny_run(dataset, tmp_path / "grounded", steps=4, grounding=1.0, **options))
    log = [json.loads(line) for line in (tmp_path / "grounded" / "log.jsonl").read_text().splitlines()]
    assert [h["grounding_loss"] > 0 for h in log if "loss" in h] == [True] * 4
    plain = train(tiny_run(dataset, tmp_path / "plain", steps=4, **options))
    grounded_weights = load_checkpoint(grounded, device="cpu")[0].state_dict()
    plain_weights = load_checkpoint(plain, device="cpu")[0].state_dict()
    assert grounded_weights.keys() == plain_weights.keys()  # no extra parameters to ship
    assert any(not torch.equal(plain_weights[k], v) for k, v in grounded_weights.items())
    # the check of every head's look-up reads the held-out quizzes; a 64-token model has no cells to check
    from lab.attention_check import main as attention_main

    assert attention_main(["--model", str(grounded), "--data", str(dataset)]) == 0
    rows = [line for line in capsys.readouterr().out.splitlines() if re.fullmatch(r"\| \d \| \d \| .*", line)]
    assert len(rows) == 2 * 4  # tiny: 2 layers of 4 heads
    assert all(0 <= float(share) <= 100 for row in rows for share in re.findall(r"([\d.]+)%", row))
    assert attention_main(["--model", str(grounded), "--data", str(dataset), "--values", "1,0"]) == 0
    out = capsys.readouterr().out
    assert "What layer 1, head 0 brings back" in out
    for place in ("image token", "head output", "final hidden"):
        kind, colour = re.search(rf"\| {place} \| ([\d.]+)% \| ([\d.]+)% \|", out).groups()
        assert 0 <= float(kind) <= 100 and 0 <= float(colour) <= 100
    with pytest.raises(SystemExit):
        attention_main(["--model", str(grounded), "--data", str(dataset), "--values", "2"])
    assert "LAYER,HEAD" in capsys.readouterr().err
    tiny_model = train(tiny_run(dataset, tmp_path / "64-tokens", steps=1))
    assert attention_main(["--model", str(tiny_model), "--data", str(dataset)]) == 1
    assert "one image token per grid cell" in capsys.readouterr().err
    with pytest.raises(InputError, match="Transformer decoder"):
        train(
            tiny_run(
                dataset,
                tmp_path / "lstm",
                steps=1,
                grounding=1.0,
                **{**options, "model_overrides": {**options["model_overrides"], "decoder": "lstm"}},
            )
        )

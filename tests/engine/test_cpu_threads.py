"""engine.cpu_threads in a child process (it changes torch's thread counts for the whole process):
after keep_other_threads_single() every new thread uses one OpenMP thread, a thread that calls
use_cpu_threads(n) uses n, and a scheduler (whose thread takes the reserved count) still decodes.
The speed this buys is measured by `python -m lab.bench_serve`, not here."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

CHILD = r"""
import json, threading, torch
torch.set_num_threads(2)
from engine import cpu_threads
from engine.scheduler import Scheduler, SchedulerConfig
from tests.tiny_models import tiny_model

seen = {"reserved": cpu_threads.keep_other_threads_single(), "main": torch.get_num_threads()}

def other():
    seen["other thread"] = torch.get_num_threads()

def decoding():
    seen["took"] = cpu_threads.use_cpu_threads(2)
    seen["decoding thread"] = torch.get_num_threads()

for target in (other, decoding):
    thread = threading.Thread(target=target)
    thread.start()
    thread.join()
from engine.fusion import ModelInputs
from engine.types import GenerationConfig
ids = torch.tensor([[5, 6, 7, 8]])
inputs = ModelInputs(
    ids=ids, positions=torch.arange(4)[None], lengths=torch.tensor([4]), media_kind=torch.zeros_like(ids)
)
scheduler = Scheduler(tiny_model(seed=1), set(), config=SchedulerConfig(slots=2, slot_len=64))
seen["scheduler tokens"] = len(list(scheduler.generate(inputs, GenerationConfig(temperature=0, max_new_tokens=6))))
scheduler.close()
print(json.dumps(seen))
"""


@pytest.mark.skipif(sys.platform != "linux" or (os.cpu_count() or 1) < 2, reason="libgomp: Linux, 2+ cores")
def test_other_threads_run_single_and_the_decoding_thread_takes_the_cores():
    env = {**os.environ, "PYTHONPATH": f"{ROOT}{os.pathsep}{ROOT / 'tests'}"}
    command = [sys.executable, "-c", CHILD]
    result = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-3000:]
    seen = json.loads(result.stdout.strip().splitlines()[-1])
    assert seen["reserved"] == 2 and seen["main"] == 1 and seen["other thread"] == 1
    assert seen["took"] is True and seen["decoding thread"] == 2
    assert seen["scheduler tokens"] == 6  # a scheduler's thread decodes with the reserved count

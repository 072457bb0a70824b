"""What the fast decode steps cost in quality: SmolLM2-135M-Instruct in fp32 against int8 and
int4 weights (engine.quantize), on the same questions and text. Activations are bfloat16, except
where the C++ int8 kernel runs (engine.native_step.fast_kernels: the int8 layers and the head on
a CPU with AVX2), which rounds them to int8 per block of 32 inputs, as llama.cpp does.

    python -m lab.quant_eval            # ~3-9 min on 2 CPU cores

Prints, for each: the factual-QA score (lab.data.factual_qa, 48 questions, contains-match,
greedy, 80 new tokens), the held-out perplexity of chatterbot-corpus replies given their
opener (dialogues never used in training), how many of the 48 greedy answers are identical
to fp32's, and batch-1 decode tokens/s on this machine.
"""

from __future__ import annotations

import argparse
import math
import time

import torch

from engine.llm import load_smollm2
from engine.llm.lm import LanguageModel
from engine.quantize import quantize
from engine.types import GenerationConfig
from lab.lm_eval import GREEDY, chat_cross_entropy, heldout_chat_pairs


def answers(lm: LanguageModel) -> list[str]:
    from tqdm import tqdm

    from lab.data.factual_qa import FACTUAL_QA

    return [lm.reply([{"role": "user", "content": q}], GREEDY) for q, _ in tqdm(FACTUAL_QA, desc="factual QA")]


def score(replies: list[str]) -> float:
    from lab.data.factual_qa import FACTUAL_QA

    return sum(any(ref in r.lower() for ref in refs) for r, (_, refs) in zip(replies, FACTUAL_QA)) / len(FACTUAL_QA)


def decode_rate(lm: LanguageModel, new_tokens: int = 64) -> float:
    config = GenerationConfig(temperature=0, max_new_tokens=new_tokens)
    messages = [{"role": "user", "content": "Write a long story about a lighthouse keeper and the sea."}]
    times = []
    for _ in lm.generate_ids(messages, config):
        times.append(time.perf_counter())
    return (len(times) - 1) / (times[-1] - times[0])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--chat-pairs", type=int, default=60)
    args = parser.parse_args(argv)
    base = load_smollm2("cpu", dtype=torch.float32)
    pairs = heldout_chat_pairs(args.chat_pairs)
    rows = {}
    for name, lm in (
        ("fp32", base),
        ("int8 weights", LanguageModel(quantize(base.model, "int8"), base.tokenizer)),
        ("int4 (Q4_1 as is), int8 head", LanguageModel(quantize(base.model, "int4"), base.tokenizer)),
    ):
        replies = answers(lm)
        loss = chat_cross_entropy(lm.model, lm.tokenizer, pairs)
        rows[name] = (score(replies), math.exp(loss), replies, decode_rate(lm))
    reference = rows["fp32"][2]
    print(f"{'':<38}{'factual QA':>12}{'perplexity':>12}{'same answer':>13}{'tok/s':>8}")
    for name, (qa, ppl, replies, rate) in rows.items():
        same = sum(a == b for a, b in zip(replies, reference))
        print(f"{name:<38}{qa:>11.1%}{ppl:>12.2f}{same:>9}/{len(reference)}{rate:>8.1f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""Text metrics for evaluation: normalized exact match, corpus BLEU-4, ROUGE-L F1."""

from __future__ import annotations

import math
import re
from collections import Counter

_WORD = re.compile(r"[a-z0-9']+")


def words(text: str) -> list[str]:
    return _WORD.findall(text.lower())


def exact_match(prediction: str, reference: str) -> bool:
    """Equal after lower-casing and dropping punctuation and extra spaces."""
    return words(prediction) == words(reference)


def _ngrams(tokens: list[str], n: int) -> Counter:
    return Counter(tuple(tokens[i : i + n]) for i in range(len(tokens) - n + 1))


def corpus_bleu(predictions: list[str], references: list[str], max_n: int = 4) -> float:
    """BLEU-4 over a corpus (Papineni et al. 2002) with add-one smoothing for n > 1, in [0, 100]."""
    matches, totals = [0] * max_n, [0] * max_n
    pred_len = ref_len = 0
    for prediction, reference in zip(predictions, references):
        p, r = words(prediction), words(reference)
        pred_len, ref_len = pred_len + len(p), ref_len + len(r)
        for n in range(1, max_n + 1):
            overlap = _ngrams(p, n) & _ngrams(r, n)
            matches[n - 1] += sum(overlap.values())
            totals[n - 1] += max(len(p) - n + 1, 0)
    if pred_len == 0 or matches[0] == 0:
        return 0.0
    log_precision = sum(math.log((matches[i] + (i > 0)) / (totals[i] + (i > 0))) for i in range(max_n)) / max_n
    brevity = 1.0 if pred_len > ref_len else math.exp(1 - ref_len / pred_len)
    return 100.0 * brevity * math.exp(log_precision)


def _lcs(a: list[str], b: list[str]) -> int:
    previous = [0] * (len(b) + 1)
    for x in a:
        current = [0]
        for j, y in enumerate(b):
            current.append(previous[j] + 1 if x == y else max(previous[j + 1], current[j]))
        previous = current
    return previous[-1]


def rouge_l(predictions: list[str], references: list[str]) -> float:
    """Mean ROUGE-L F1 (longest common subsequence of words), in [0, 100]."""
    scores = []
    for prediction, reference in zip(predictions, references):
        p, r = words(prediction), words(reference)
        lcs = _lcs(p, r)
        if not p or not r or not lcs:
            scores.append(0.0)
            continue
        precision, recall = lcs / len(p), lcs / len(r)
        scores.append(2 * precision * recall / (precision + recall))
    return 100.0 * sum(scores) / max(len(scores), 1)

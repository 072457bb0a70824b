"""Word error rate: (substitutions + deletions + insertions) / words in the reference.

    normalize_words("Hello, it's the colour-blind test!") -> ["hello", "it's", "the", "color", "blind", "test"]
    word_errors(reference, hypothesis) -> (errors, reference_words)
    word_error_rate(reference, hypothesis) -> float

Normalisation, as speech recognition benchmarks do: lower case, punctuation and hyphens
become spaces, a few British spellings become American (Whisper's English models write
either), so only wrong, missing or extra words count.
"""

from __future__ import annotations

import re

_SPELLINGS = {
    "colour": "color",
    "colours": "colors",
    "favourite": "favorite",
    "centre": "center",
    "grey": "gray",
    "neighbour": "neighbor",
    "realise": "realize",
    "organise": "organize",
}


def normalize_words(text: str) -> list[str]:
    words = re.sub(r"[^a-z0-9' ]+", " ", text.lower().replace("-", " ")).split()
    return [_SPELLINGS.get(w.strip("'"), w.strip("'")) for w in words if w.strip("'")]


def word_errors(reference: str, hypothesis: str) -> tuple[int, int]:
    """(edit distance over normalised words, number of reference words)."""
    ref, hyp = normalize_words(reference), normalize_words(hypothesis)
    row = list(range(len(hyp) + 1))  # distances from the empty reference prefix
    for i, ref_word in enumerate(ref, 1):
        diagonal, row[0] = row[0], i
        for j, hyp_word in enumerate(hyp, 1):
            diagonal, row[j] = row[j], min(row[j] + 1, row[j - 1] + 1, diagonal + (ref_word != hyp_word))
    return row[len(hyp)], len(ref)


def word_error_rate(reference: str, hypothesis: str) -> float:
    errors, words = word_errors(reference, hypothesis)
    return errors / words if words else float(errors > 0)

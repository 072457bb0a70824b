"""Split a training batch into micro-batches of similar length, to pad less.

A batch mixes one-line chit-chat (~30 tokens), scene quizzes (~45-200) and sounds (up to 64
audio tokens), and `collate` pads every row to the longest: measured on the built-in
recipe, 53% of the padded tokens were real. Sorting by length and cutting the batch where
it pays (each micro-batch costs its rows x its longest row, plus a fixed cost per forward
pass) keeps 89% of them real, and a step takes 1.49x less time (`python -m lab.bench_train`).
The loss is unchanged: the micro-batches' summed cross-entropies are divided by the whole
batch's token count (see lab.losses.accumulate_gradients).

    length_groups([30, 180, 44, 52], overhead=128)   # -> [[0, 2, 3], [1]]: indices, shortest first
"""

from __future__ import annotations

FORWARD_OVERHEAD_TOKENS = 128  # the fixed cost of one more forward pass, in padded tokens (2-core CPU)


def length_groups(lengths: list[int], overhead: int = FORWARD_OVERHEAD_TOKENS) -> list[list[int]]:
    """Indices of `lengths` cut into contiguous runs of the length order that minimise
    sum(rows x longest row + overhead) over the runs; exact (dynamic programming)."""
    order = sorted(range(len(lengths)), key=lambda i: lengths[i])
    sizes = [lengths[i] for i in order]
    best = [0] + [float("inf")] * len(sizes)  # best[j]: cheapest cut of the j shortest
    cut = [0] * (len(sizes) + 1)
    for end in range(1, len(sizes) + 1):
        for start in range(end):
            cost = best[start] + (end - start) * sizes[end - 1] + overhead
            if cost < best[end]:
                best[end], cut[end] = cost, start
    groups, end = [], len(sizes)
    while end:
        groups.append(order[cut[end] : end])
        end = cut[end]
    return groups[::-1]

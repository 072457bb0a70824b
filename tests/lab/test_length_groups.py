import itertools

from lab.length_groups import length_groups


def _cost(lengths, groups, overhead):
    return sum(len(g) * max(lengths[i] for i in g) + overhead for g in groups)


def test_groups_cover_every_row_once_shortest_first():
    lengths = [30, 180, 44, 52, 31, 190, 75]
    groups = length_groups(lengths, overhead=128)
    assert sorted(i for g in groups for i in g) == list(range(len(lengths)))
    longest = [max(lengths[i] for i in g) for g in groups]
    assert longest == sorted(longest) and len(groups) > 1


def test_the_cut_is_the_cheapest_of_all_cuts_of_the_length_order():
    lengths = [12, 95, 40, 41, 200, 13, 60, 61]
    order = sorted(range(len(lengths)), key=lambda i: lengths[i])
    for overhead in (0, 50, 128, 10_000):
        best = min(
            _cost(lengths, [order[a:b] for a, b in zip((0, *cuts), (*cuts, len(order)))], overhead)
            for k in range(len(order))
            for cuts in itertools.combinations(range(1, len(order)), k)
        )
        assert _cost(lengths, length_groups(lengths, overhead), overhead) == best


def test_a_large_overhead_keeps_one_batch_and_no_overhead_pads_nothing():
    lengths = [5, 9, 7]
    assert length_groups(lengths, overhead=10_000) == [[0, 2, 1]]
    assert all(len({lengths[i] for i in g}) == 1 for g in length_groups(lengths, overhead=0))
    assert length_groups([]) == []

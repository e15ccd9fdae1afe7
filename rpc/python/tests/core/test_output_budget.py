"""OutputBudget: what each connection holds for its peer, summed in O(1) per
report, and who is closed when the sum passes the limit (issue 10)."""
from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from onedrive_rpc.core.budget import OutputBudget

KIB = 1024


def test_hold_replaces_what_a_holder_reported_and_release_forgets_it():
    budget: OutputBudget[str] = OutputBudget(100)
    budget.hold("a", 30)
    budget.hold("b", 50)
    budget.hold("a", 10)
    assert (budget.total, len(budget), budget.over) == (60, 2, False)
    budget.hold("b", 95)
    assert budget.over
    budget.release("b")
    budget.release("unknown")
    assert (budget.total, len(budget), budget.held("b")) == (10, 1, 0)
    with pytest.raises(ValueError, match="at least 1 byte"):
        OutputBudget(0)


def test_settle_counts_afresh_and_closes_nobody_when_acks_made_room():
    budget: OutputBudget[str] = OutputBudget(100)
    budget.hold("a", 70)
    budget.hold("b", 50)  # a is stale: its peer has acknowledged since
    assert budget.over
    assert budget.settle({"a": 5, "b": 50}.__getitem__) == []
    assert budget.total == 55 and not budget.over


def test_settle_closes_those_holding_the_most_until_the_rest_fit():
    budget: OutputBudget[str] = OutputBudget(80)
    now = {"reader": 8, "stalled": 60, "slow": 30, "quiet": 0, "stalled2": 55}
    for name in now:
        budget.hold(name, 1)
    picked = budget.settle(now.__getitem__)
    assert picked == [("stalled", 60), ("stalled2", 55)]
    assert budget.total == 38 and len(budget) == 3


def test_healthy_peers_of_an_ordinary_broadcast_are_never_picked():
    # 300 peers that read promptly hold a few small broadcasts each.
    budget: OutputBudget[int] = OutputBudget(256 * 1024 * KIB)
    for peer in range(300):
        budget.hold(peer, 64 * KIB)
    assert not budget.over
    # And 20 that never read, growing until they are closed.
    stalled = {peer: 0 for peer in range(300, 320)}
    closed = []
    for _ in range(2000):
        for peer in list(stalled):
            stalled[peer] += 256 * KIB
            budget.hold(peer, stalled[peer])
            if budget.over:
                held = dict(stalled)
                picked = budget.settle(lambda p: held.get(p, 64 * KIB))
                for p, _ in picked:
                    closed.append(p)
                    stalled.pop(p, None)
            assert budget.total <= budget.limit + 256 * KIB
        if not stalled:
            break
    assert sorted(closed) == list(range(300, 320))
    assert budget.total == 300 * 64 * KIB


@settings(max_examples=100, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 9), st.integers(0, 50)), max_size=80))
def test_after_settle_the_total_is_within_the_limit_and_each_picked_held_at_least_the_rest(reports):
    budget: OutputBudget[int] = OutputBudget(100)
    now = {}
    for holder, held in reports:
        now[holder] = held
        budget.hold(holder, held)
        if budget.over:
            picked = dict(budget.settle(now.__getitem__))
            left = {h: size for h, size in now.items() if h not in picked}
            assert budget.total == sum(left.values()) <= budget.limit
            assert all(size >= max(left.values(), default=0) for size in picked.values())
            now = left

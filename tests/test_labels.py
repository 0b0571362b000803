"""Label budgets in the update cycle: the acquisition strategies on worked examples and on a
planted problem where uncertainty sampling must beat random sampling at equal labels, the
split of a budget between the gate and training, and the access constraint at set-up."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import preset
from sklearn.linear_model import LogisticRegression

from mlbench.cycle.labels import (
    LabelAccess,
    acquire,
    entropy,
    kcenter,
    least_confidence,
    margin,
)
from mlbench.errors import MlbenchError


def test_uncertainty_scores_and_kcenter_on_worked_values():
    p = np.array([[0.9, 0.1, 0.0], [0.4, 0.35, 0.25], [0.5, 0.5, 0.0]])
    assert least_confidence(p, p).tolist() == pytest.approx([0.1, 0.6, 0.5])
    assert margin(p, p).tolist() == pytest.approx([-0.8, -0.05, 0.0])
    assert entropy(p, p)[2] == pytest.approx(np.log(2))
    assert acquire("least_confidence", 1, p, p, 0).tolist() == [1]
    assert acquire("margin", 1, p, p, 0).tolist() == [2]  # the closest call between two classes
    assert acquire("entropy", 2, p, p, 0).tolist() == [1, 2]
    # points on a line: from 0 the farthest is 10, then the point farthest from both (5)
    x = np.array([[0.0], [1.0], [5.0], [10.0], [9.0]])
    # then 1 and 9 are both 1 away from a chosen point: the first of them (1)
    assert kcenter(x, 3, labelled=np.array([[0.0]])).tolist() == [3, 2, 1]
    assert kcenter(x, 2, seed=0).tolist()[1] in (0, 3)  # from a random start, the farthest end next
    assert sorted(acquire("random", 3, np.zeros((5, 2)), x, seed=1).tolist()) == \
        sorted(acquire("random", 3, np.zeros((5, 2)), x, seed=1).tolist())  # seeded


def _planted(seed: int):
    """Two classes split by the line x0 = 0: 2,000 items spread over the square, 200 in a thin
    band at the boundary; the test items near the boundary. The items a logistic model needs
    are the uncertain ones."""
    rng = np.random.default_rng(seed)
    x = np.concatenate([rng.uniform(-3, 3, (2000, 2)),
                        np.column_stack([rng.uniform(-0.3, 0.3, 200), rng.uniform(-3, 3, 200)])])
    xt = rng.uniform(-1, 1, (2000, 2))
    return x, (x[:, 0] > 0).astype(int), xt, (xt[:, 0] > 0).astype(int)


def _learn(strategy: str, seed: int, rounds: int = 8, per: int = 4) -> float:
    x, y, xt, yt = _planted(seed)
    rng = np.random.default_rng(seed)
    lab = [*rng.choice(np.flatnonzero(y == 0), 3, replace=False), *rng.choice(np.flatnonzero(y == 1), 3, replace=False)]
    for r in range(rounds):  # 6 + 8 x 4 = 38 labels for every strategy
        clf = LogisticRegression(C=100).fit(x[lab], y[lab])
        pool = np.setdiff1d(np.arange(len(x)), lab)
        lab += pool[acquire(strategy, per, clf.predict_proba(x[pool]), x[pool], seed * 100 + r)].tolist()
    assert len(lab) == 38
    return float((LogisticRegression(C=100).fit(x[lab], y[lab]).predict(xt) == yt).mean())


@pytest.mark.parametrize("strategy", ["least_confidence", "margin", "entropy"])
def test_uncertainty_sampling_beats_random_at_equal_labels_on_a_planted_problem(strategy):
    rand = np.array([_learn("random", s) for s in range(8)])
    unc = np.array([_learn(strategy, s) for s in range(8)])
    assert unc.mean() - rand.mean() > 0.02 and (unc >= rand).sum() >= 7, (unc, rand)


def test_a_budget_is_split_between_the_gate_and_the_strategy():
    acc = LabelAccess("budgeted", 10, ["entropy"])
    probs = np.full((50, 2), 0.5)
    probs[:, 0] = np.linspace(0.5, 1.0, 50)  # item 0 the most uncertain, item 49 the least
    probs[:, 1] = 1 - probs[:, 0]
    gate = np.zeros(50, dtype=bool)
    gate[::5] = True  # items 0, 5, 10, ... are gate items
    picked = acc.pick("entropy", False, probs, probs, gate, 0.3, seed=0)
    assert len(picked) == 10 and gate[picked].sum() == 3  # round(0.3 x 10) at random from the gate
    train_picks = picked[~gate[picked]]
    assert train_picks.tolist() == [1, 2, 3, 4, 6, 7, 8]  # the 7 most uncertain training items
    assert len(acc.pick("entropy", True, probs, probs, gate, 0.3, 0)) == 50  # the oracle sees every label
    assert len(acc.pick(None, False, probs, probs, gate, 0.3, 0)) == 0  # never buys none
    assert len(LabelAccess().pick(None, False, probs, probs, gate, 0.3, 0)) == 50  # delayed: every label


@pytest.mark.parametrize("kw, message", [
    ({"labels": {"access": "budgeted", "budget": 0, "strategies": ["random"]}}, "budget must be >= 1"),
    ({"labels": {"access": "none", "budget": None, "strategies": ["random"]}}, "drift, oracle retrain"),
    ({"labels": {"access": "budgeted", "budget": 5, "strategies": ["coreset"]}}, "unknown 'coreset'"),
    ({"labels": {"access": "sometimes", "budget": None, "strategies": ["random"]}}, "access must be one of"),
])
def test_bad_label_settings_fail_at_set_up(kw, message):
    with pytest.raises(MlbenchError, match=message):
        preset("cycle", "default", **kw)
    ok = preset("cycle", "default", policies=["never"], labels={"access": "none", "budget": None,
                                                                 "strategies": ["random"]})
    assert [n for n, _, _ in ok.tracks] == ["never"]
    both = preset("cycle", "default", labels={"access": "budgeted", "budget": 20, "strategies": ["random", "entropy"]})
    assert [n for n, _, _ in both.tracks] == ["never", "drift+random", "drift+entropy", "oracle"]

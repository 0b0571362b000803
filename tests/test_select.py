"""mlbench select on planted problems whose right model size is known: a linear problem where a
wider model only overfits (the linear candidate wins), a non-linear one the linear candidate
cannot learn (the smallest non-linear candidate that meets the requirement wins)."""

import csv
import json

import numpy as np
import pytest
import torch
from conftest import compose_config, run_cli, run_dirs

from mlbench.analysis.compare import compare
from mlbench.errors import MlbenchError
from mlbench.models import CNN, MLP
from mlbench.select import run_select_command
from mlbench.select.candidates import flops_per_item, nested_sizes

M = "{_target_: mlbench.models.MLP, _partial_: true, hidden: %s, dropout: 0.0}"
CANDIDATES = "select.candidates={linear: %s, mlp_16: %s, wide: %s}" % (M % "[]", M % "[16]", M % "[512,512]")
FAST = ("train.epochs=100", "train.patience=0", "train.optimizer.lr=0.03", "select.fractions=[0.3,0.6,1.0]",
        "select.resamples=50")


def _select(tmp_path, data, *overrides):
    cfg = compose_config("data=npz", f"data.path={data}", CANDIDATES, *FAST, *overrides,
                         results=tmp_path / "results", cache=tmp_path / "cache")
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    return run_select_command(cfg, run_dir), run_dir


def test_on_a_linear_problem_the_linear_candidate_wins_and_the_wide_one_only_overfits(tmp_path):
    rng = np.random.default_rng(0)
    x = rng.standard_normal((2000, 30))
    y = (x @ rng.standard_normal(30) + 2.0 * rng.standard_normal(2000) > 0).astype(int)  # Bayes accuracy ~0.9
    np.savez(tmp_path / "linear.npz", x=x.astype(np.float32), y=y)
    s, run_dir = _select(tmp_path, tmp_path / "linear.npz")
    sel = s["select"]
    rows = {r["name"]: r for r in sel["candidates"]}
    assert sel["recommended"] == "linear", sel["decision"]
    assert rows["wide"]["train_val_gap"] > rows["linear"]["train_val_gap"]  # capacity bought only a gap
    assert rows["wide"]["accuracy"] <= rows["linear"]["accuracy"] + 0.01
    # capacity counted independently: a linear layer is 2·in·out FLOPs
    assert rows["linear"]["flops"] == 2 * 30 * 2 and rows["linear"]["params"] == 30 * 2 + 2
    assert rows["mlp_16"]["flops"] == 2 * (30 * 16 + 16 * 2)
    # the learning curve: nested sizes, the same test items, its last point the candidate's own test error
    n = s["data"]["n_train"]
    assert rows["wide"]["curve"]["sizes"] == nested_sizes(n, [0.3, 0.6, 1.0], 2) and rows["wide"]["curve"]["sizes"][-1] == n
    assert rows["wide"]["curve"]["error"][-1] == pytest.approx(1 - rows["wide"]["accuracy"])
    assert sel["complexity"]["ber"]["lower"] <= sel["complexity"]["ber"]["upper"]
    assert "Model selection" in (run_dir / "report.md").read_text() and "plots/select_learning_curves.png" in s["plots"]
    assert json.loads((run_dir / "summary.json").read_text())["select"]["recommended"] == "linear"
    files = compare([run_dir], out=tmp_path / "cmp", quiet=True)
    assert tmp_path / "cmp" / "select.csv" in files
    got = {r["candidate"]: r for r in csv.DictReader(open(tmp_path / "cmp" / "select.csv"))}
    assert got["linear"]["recommended"] == "True" and int(got["wide"]["params"]) == rows["wide"]["params"]


def test_on_a_non_linear_problem_the_smallest_candidate_that_meets_the_requirement_wins(tmp_path):
    rng = np.random.default_rng(0)
    r = np.where(rng.random(1500) < 0.5, 1.0, 2.0)  # two rings: no line separates them
    t = rng.uniform(0, 2 * np.pi, 1500)
    x = np.column_stack([r * np.cos(t), r * np.sin(t)]) + 0.15 * rng.standard_normal((1500, 2))
    x = np.column_stack([x, rng.standard_normal((1500, 3))]).astype(np.float32)
    np.savez(tmp_path / "rings.npz", x=x, y=(r > 1.5).astype(int))
    s, _ = _select(tmp_path, tmp_path / "rings.npz", 'select.requirements=[{metric: accuracy, op: ">=", value: 0.9}]')
    sel = s["select"]
    rows = {r["name"]: r for r in sel["candidates"]}
    assert not rows["linear"]["passed"] and rows["linear"]["accuracy"] < 0.7
    assert rows["linear"]["diagnosis"].startswith("too simple")
    assert sel["recommended"] == "mlp_16" and sel["runner_up"] == "wide", sel["decision"]
    assert "linear is cheaper but fails: accuracy >= 0.9" in sel["decision"]


def test_flops_are_counted_as_by_hand_for_a_conv_net():
    m = CNN((1, 8, 8), 10, channels=[4], hidden=6)
    # two 3x3 convs at 8x8 (1->4, 4->4), then pooled to 4x4 (no FLOPs), two linear layers: 2 per multiply-add
    by_hand = 2 * (1 * 4 * 9 * 64 + 4 * 4 * 9 * 64 + 4 * 6 + 6 * 10)
    assert flops_per_item(m, (1, 8, 8)) == by_hand
    assert flops_per_item(MLP((3,), 2, hidden=[]), (3,)) == 2 * 3 * 2


def test_a_sweep_over_the_run_models_options_names_one_candidate_per_value(make_cfg):
    from mlbench.select import candidates_of
    cfg = make_cfg("data=breast_cancer", "select.sweep={hidden: [[8], [32, 16]], dropout: [0.0]}")
    cands = candidates_of(cfg, "tabular")
    assert [c.name for c in cands] == ["hidden=[8] dropout=0.0", "hidden=[32, 16] dropout=0.0"]
    assert cands[1].model["hidden"] == [32, 16] and cands[1].model["_target_"] == "mlbench.models.MLP"
    with pytest.raises(MlbenchError, match="not an option of the run's model"):
        candidates_of(make_cfg("data=breast_cancer", "select.sweep={depth: [10]}"), "tabular")
    auto = candidates_of(make_cfg(), "image")
    assert [c.name for c in auto] == ["linear", "cnn_8", "cnn_32", "resnet10_16"]


@pytest.mark.parametrize("override, message", [
    ("select.candidates={}", "select.candidates is empty"),
    ("select.fractions=[0.5,1.0]", "select.fractions needs at least 3 fractions"),
])
def test_bad_select_settings_are_one_line_before_any_training(tmp_path, override, message):
    out = run_cli("select", "debug=smoke", "data=breast_cancer", override, cwd=tmp_path)
    err = [line for line in out.stderr.splitlines() if line.strip()]
    assert out.returncode == 2 and len(err) == 1 and message in err[0], out.stderr
    assert not run_dirs(tmp_path) and "✓" not in out.stdout


def test_select_end_to_end_from_the_command_line(tmp_path):
    out = run_cli("select", "debug=smoke", "data=breast_cancer", "select.fractions=[0.3,0.6,1.0]",
                  "select.resamples=20", cwd=tmp_path)
    assert out.returncode == 0, out.stderr[-2000:]
    (run_dir,) = run_dirs(tmp_path)
    s = json.loads((run_dir / "summary.json").read_text())
    names = [r["name"] for r in s["select"]["candidates"]]
    assert names == ["linear", "mlp_16", "mlp_128", "mlp_256x128"]
    assert "mlbench select · breast_cancer · 4 candidates" in out.stdout
    rec = s["select"]["recommended"]
    assert rec is None or rec in names
    probs_ok = all(0 <= r["accuracy"] <= 1 for r in s["select"]["candidates"])
    assert probs_ok and torch.isfinite(torch.tensor([r["flops"] for r in s["select"]["candidates"]], dtype=torch.float)).all()

"""Training-data augmentation (augment=...) and its paired effect (augment.compare=true), on
planted problems: train-time feature noise buys robustness to test-time feature noise exactly
where the clean model leans on a fragile feature; noise far below the corruption buys nothing."""

import csv

import numpy as np
import pytest
import torch
from conftest import run_cli
from omegaconf import OmegaConf

from mlbench.analysis.compare import compare
from mlbench.data import DataMeta
from mlbench.errors import MlbenchError
from mlbench.train import augment
from mlbench.train.baseline import baseline_key


def _planted(path, n=4000, seed=0):
    """Class in x1 - x2 (a difference of 0.1 between two features of spread 1: perfect on clean
    inputs, gone under test noise of 0.25 std), and a weaker robust feature x3 = s + N(0, 1)."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, n)
    s, z = 2.0 * y - 1, rng.standard_normal(n)
    x = np.column_stack([z + 0.05 * s, z - 0.05 * s, s + rng.standard_normal(n)]).astype(np.float32)
    np.savez(path, x=x, y=y, group=rng.integers(0, 2, n))
    return path


def _effects(s):
    return {r["figure"]: r for r in s["augment"]["rows"]}


def test_train_time_noise_buys_robustness_to_test_time_noise(run_stages, tmp_path):
    data = _planted(tmp_path / "planted.npz")
    ctx, s = run_stages("data=npz", f"data.path={data}", "augment=table_noise", "augment.feature_noise=0.5",
                        "augment.compare=true", "stress=feature_noise", "variants=[]", "datacheck=none", "monitor=none")
    rows = _effects(s)
    base, plain = s["variants"]["baseline"], s["variants"]["no_augment"]
    # the effect is the baseline minus the plain variant, on the same items: the run's own deltas, turned round
    assert rows["accuracy"]["effect"] == pytest.approx(base["metrics"]["accuracy"] - plain["metrics"]["accuracy"])
    assert rows["accuracy"]["ci_low"] == pytest.approx(-plain["deltas"]["accuracy"]["ci_high"])
    for sev in ("2", "3", "4", "5"):  # noise std 0.25 ... 1.0: the fragile pair is gone, the noise-trained model kept x3
        r = rows[f"feature_noise @ {sev}"]
        assert r["ci_low"] > 0.05, (sev, r)
        acc = plain["stress"]["feature_noise"]["severities"][sev]["accuracy"]
        assert r["plain"] == pytest.approx(acc)
    assert rows["accuracy"]["ci_high"] < 0  # and it costs clean accuracy: the trade-off is shown, not hidden
    groups = [r for r in s["augment"]["rows"] if r["kind"] == "group"]
    g, y = ctx.data.group["test"], ctx.data.y["test"]
    pa, pp = (ctx.live[v].evaluation.probs.argmax(1) for v in ("baseline", "no_augment"))
    assert len(groups) == 2
    for k, r in enumerate(groups):  # per group: the accuracy difference on that group's items
        m = g == k
        want = float((pa[m] == y[m]).float().mean() - (pp[m] == y[m]).float().mean())
        assert r["effect"] == pytest.approx(want, abs=1e-6) and r["ci_low"] <= r["effect"] <= r["ci_high"]
    assert s["baseline_training"]["augment"]["feature_noise"] == 0.5
    assert s["variants"]["no_augment"]["lineage"]["passes"][0]["pass"] == "train_without_augmentation"
    report = (tmp_path / "run" / "report.md").read_text()
    assert "What the augmentation buys (augment=table_noise)" in report and "plots/augment_effect.png" in s["plots"]
    files = compare([tmp_path / "run"], out=tmp_path / "cmp", quiet=True)
    assert tmp_path / "cmp" / "augment.csv" in files
    got = {r["figure"]: r for r in csv.DictReader(open(tmp_path / "cmp" / "augment.csv"))}
    assert float(got["feature_noise @ 5"]["effect"]) == pytest.approx(rows["feature_noise @ 5"]["effect"])


def test_noise_far_below_the_corruption_buys_nothing(run_stages, tmp_path):
    data = _planted(tmp_path / "planted.npz")
    _, s = run_stages("data=npz", f"data.path={data}", "augment=table_noise", "augment.feature_noise=0.001",
                      "augment.compare=true", "stress=feature_noise", "variants=[]", "datacheck=none", "monitor=none")
    stress_rows = [r for r in s["augment"]["rows"] if r["kind"] == "corruption"]
    assert len(stress_rows) == 5
    for r in stress_rows:
        assert r["ci_low"] <= 0 <= r["ci_high"], r


def test_per_group_effects_are_paired_within_each_group():
    from mlbench.evaluate.augmentation import group_effects
    g = torch.tensor([0] * 6 + [1] * 4)
    y = torch.zeros(10, dtype=torch.long)
    right, wrong = torch.tensor([0.9, 0.1]), torch.tensor([0.1, 0.9])
    aug = torch.stack([right] * 6 + [right, right, wrong, wrong])  # group 0: 6/6, group 1: 2/4
    plain = torch.stack([right, right, right, wrong, wrong, wrong] + [right] * 4)  # group 0: 3/6, group 1: 4/4
    rows = group_effects(aug, plain, y, g, n_resamples=500, seed=0, level=0.95)
    assert [r["effect"] for r in rows] == pytest.approx([0.5, -0.5])
    assert rows[0]["augmented"] == 1.0 and rows[0]["plain"] == 0.5 and rows[1]["plain"] == 1.0
    assert rows[0]["ci_low"] > 0 and rows[1]["ci_low"] <= -0.5 <= rows[1]["ci_high"] <= 0


def _meta(modality="tabular", shape=(3,), classes=2, input_range=None):
    return DataMeta("t", shape, classes, [str(i) for i in range(classes)], modality, input_range)


def test_feature_noise_has_the_stated_spread_and_respects_the_input_range(make_cfg):
    aug = augment.build(make_cfg("data=breast_cancer", "augment=table_noise", "augment.feature_noise=0.3"), _meta())
    torch.manual_seed(0)
    x, y = aug(torch.zeros(20000, 3), torch.zeros(20000, dtype=torch.long))
    assert x.std().item() == pytest.approx(0.3, rel=0.02) and abs(x.mean().item()) < 0.01
    assert torch.equal(y, torch.zeros(20000, dtype=torch.long))
    clamped = augment.Augmenter(2, feature_noise=1.0, input_range=(0.0, 1.0))
    x, _ = clamped(torch.full((1000, 3), 0.5), torch.zeros(1000, dtype=torch.long))
    assert x.min() >= 0 and x.max() <= 1 and x.std() > 0.2


def test_smote_balances_the_classes_with_points_between_same_class_neighbours(make_cfg):
    rng = np.random.default_rng(1)
    x = torch.from_numpy(rng.standard_normal((120, 3)).astype(np.float32))
    y = torch.tensor([0] * 100 + [1] * 20)
    x[100:] += 3.0
    aug = augment.build(make_cfg("data=breast_cancer", "augment=table_smote"), _meta())
    xs, ys = aug.resample(x, y, seed=0)
    assert torch.bincount(ys).tolist() == [100, 100]
    assert torch.equal(xs[:120], x) and torch.equal(ys[:120], y)  # originals first, unchanged
    minority = x[100:].double()
    for p in xs[120:].double():  # each new point lies on a segment between two minority items
        best = min(torch.linalg.norm(torch.linalg.cross(p - a, b - a)) / max(torch.linalg.norm(b - a), 1e-9)
                   for i, a in enumerate(minority) for b in minority[i + 1:]
                   if 0 <= torch.dot(p - a, b - a) <= torch.dot(b - a, b - a))
        assert best < 1e-5
    again, _ = aug.resample(x, y, seed=0)
    assert torch.equal(again, xs)  # seeded by the run's seed


def test_the_cache_key_follows_the_augmentation(make_cfg):
    none = make_cfg("data=breast_cancer")
    key = lambda cfg: baseline_key(cfg, torch.device("cpu"), 0, "d")  # noqa: E731
    assert key(none) == key(make_cfg("data=breast_cancer", "augment.compare=false"))
    noisy = make_cfg("data=breast_cancer", "augment=table_noise")
    assert key(noisy) != key(none)
    assert key(noisy) != key(make_cfg("data=breast_cancer", "augment=table_noise", "augment.feature_noise=0.4"))
    assert key(noisy) == key(make_cfg("data=breast_cancer", "augment=table_noise", "augment.compare=true"))
    assert key(augment.without(noisy)) == key(none)  # the comparison's model is the plain run's baseline


@pytest.mark.parametrize("overrides, message", [
    (("augment=table_noise",), "augment=table_noise is for tabular data, but digits is image"),
    (("augment.compare=true",), "needs an augmentation"),
    (("data=breast_cancer", "augment=table_noise", "augment.feature_noise=-1"), "feature_noise must be >= 0"),
    (("data=breast_cancer", "augment=table_smote", "augment.oversample.k_neighbors=500"), "lower k_neighbors"),
])
def test_bad_augment_settings_are_one_line(make_cfg, overrides, message):
    cfg = make_cfg(*overrides)
    from mlbench.pipeline import RunContext, load_data, setup
    ctx = RunContext(cfg=cfg, run_dir=None)
    setup(ctx)
    with pytest.raises(MlbenchError, match=message):
        load_data(ctx)


def _torchvision_error() -> str | None:
    """Why torchvision does not import here (None when it does)."""
    try:
        import torchvision  # noqa: F401
    except Exception as e:  # ImportError, or a build for another torch (RuntimeError)
        return f"{type(e).__name__}: {e}"
    return None


@pytest.mark.skipif(_torchvision_error() is None, reason="torchvision imports here (tests/test_augment_images.py)")
def test_image_augmentation_without_a_working_torchvision_is_one_line(tmp_path):
    out = run_cli("debug=smoke", "augment=image_noise", cwd=tmp_path)
    err = [line for line in out.stderr.splitlines() if line.strip()]
    assert out.returncode == 2 and len(err) == 1 and "need torchvision" in err[0], out.stderr
    assert "baseline" not in out.stdout


def test_without_switches_augmentation_off_and_keeps_everything_else(make_cfg):
    cfg = make_cfg("data=breast_cancer", "augment=table_noise", "augment.compare=true", "train.epochs=3")
    plain = augment.without(cfg)
    assert not augment.active(plain) and augment.active(cfg)
    assert plain.train.epochs == 3 and OmegaConf.to_container(plain.data) == OmegaConf.to_container(cfg.data)

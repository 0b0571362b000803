"""Unlabelled evaluation data (``data.unlabelled``): label-free figures per variant.

Planted truth: the unlabelled items are held-out digits whose labels the test keeps to itself,
once as they are and once with Gaussian noise added (a covariate shift of known size). The
detectors must flag the noisy set and not the clean one, and the label-free accuracy estimates
must fall with the true (hidden) accuracy. Every figure is recomputed in the test from the
user's own module (plain torch) and the split positions the run recorded: ATC, DoC, average
confidence, agreement and its Wilson interval by hand."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from conftest import run_in_process
from PIL import Image
from test_your_model import user  # noqa: F401 - the module-scoped fixture (a user's net, digits, rows)

QUICK = ("stress=none", "monitor=none", "datacheck=none", "eval.efficiency=false")


@pytest.fixture(scope="module")
def planted(user, tmp_path_factory):  # noqa: F811
    """The user's digits split in two: 1,400 labelled items (.npz) and 397 held out, written
    clean and noisy (σ = 0.35, clipped to [0, 1]) as .npz files without labels."""
    d = tmp_path_factory.mktemp("unlabelled")
    rng = np.random.default_rng(0)
    idx = rng.permutation(len(user["y"]))
    lab, held = idx[:1400], idx[1400:]
    x, y = user["x"], user["y"]
    np.savez(d / "labelled.npz", x=x[lab], y=y[lab])
    noisy = np.clip(x[held] + rng.normal(0, 0.35, x[held].shape), 0, 1).astype(np.float32)
    np.savez(d / "clean.npz", x=x[held])
    np.savez(d / "noisy.npz", x=noisy)
    return {"dir": d, "x_lab": x[lab], "y_lab": y[lab], "clean": x[held], "noisy": noisy, "y_held": y[held]}


def _atc_threshold(scores: np.ndarray, correct: np.ndarray) -> float:
    """ATC's threshold as the authors' reference implementation finds it (``find_ATC_threshold``,
    Garg et al. 2022): walk the sorted scores and keep the first point where the wrong items
    above balance the correct items below best."""
    order = np.argsort(scores, kind="stable")
    s, c = scores[order], correct[order]
    fp, fn = float(np.sum(~correct)), 0.0
    best, thres = abs(fp - fn), 0.0
    for i in range(len(s)):
        if c[i]:
            fn += 1
        else:
            fp -= 1
        if abs(fp - fn) < best:
            best, thres = abs(fp - fn), s[i]
    return thres


def _probs(net, x: np.ndarray) -> np.ndarray:
    with torch.no_grad():
        return net(torch.from_numpy(x)).softmax(1).double().numpy()


def _run(user, planted, tmp_path, which: str):  # noqa: F811
    r = user["root"]
    return run_in_process(*QUICK, "data=npz", f"data.path={planted['dir'] / 'labelled.npz'}", "data.modality=image",
                          f"data.unlabelled={planted['dir'] / (which + '.npz')}", "model=torch",
                          f"model.script={r / 'net.py'}", "model.arch=Net", f"model.weights={r / 'net.safetensors'}",
                          "model.class_names=null", "train=none", "variants=[onnx_fp32,ort_int8_dynamic]",
                          run_dir=tmp_path / "run", cache=tmp_path / "cache")


@pytest.mark.parametrize("which", ["clean", "noisy"])
def test_label_free_figures_equal_a_hand_computation_and_follow_the_planted_shift(user, planted, tmp_path, which):  # noqa: F811
    ctx, s = _run(user, planted, tmp_path, which)
    sec = s["unlabelled"]
    assert sec["n"] == len(planted["y_held"])
    net = user["net"]
    # independent: the user's module on the calib items (positions from splits.npz) and on the unlabelled ones
    calib = np.load(tmp_path / "run" / "splits.npz")["calib"]
    p_cal, y_cal = _probs(net, planted["x_lab"][calib]), planted["y_lab"][calib]
    p_u = _probs(net, planted[which])
    saved = np.load(tmp_path / "run" / "predictions" / "unlabelled.npz")
    assert np.allclose(saved["baseline"], p_u, atol=1e-5)
    acc_cal = (p_cal.argmax(1) == y_cal).mean()
    conf_cal = p_cal.max(1)
    t = _atc_threshold(conf_cal, p_cal.argmax(1) == y_cal)
    est = sec["variants"]["baseline"]["estimates"]
    assert est["calib_accuracy"] == pytest.approx(acc_cal)
    assert est["average_confidence"] == pytest.approx(p_u.max(1).mean(), abs=1e-6)
    assert est["doc"] == pytest.approx(acc_cal - (conf_cal.mean() - p_u.max(1).mean()), abs=1e-6)
    assert est["atc"] == pytest.approx((p_u.max(1) >= t).mean())
    # agreement of each variant with the baseline, and its Wilson interval, by hand
    base = saved["baseline"].argmax(1)
    for name in ("onnx_fp32", "ort_int8_dynamic"):
        a = sec["variants"][name]["agreement"]
        k, n = int((saved[name].argmax(1) == base).sum()), len(base)
        z = 1.959963984540054
        centre = (k / n + z * z / (2 * n)) / (1 + z * z / n)
        half = z * math.sqrt(k / n * (1 - k / n) / n + z * z / (4 * n * n)) / (1 + z * z / n)
        assert a["value"] == pytest.approx(k / n) and a["n"] == n
        assert (a["ci_low"], a["ci_high"]) == pytest.approx((centre - half, centre + half), abs=1e-9)
    # planted truth: the hidden labels
    true_acc = (p_u.argmax(1) == planted["y_held"]).mean()
    drift = {d: r["drift"] for d, r in sec["variants"]["baseline"]["drift"].items()}
    assert set(drift) == {"bbsd_soft", "bbsd_hard", "confidence", "entropy"}  # ks_inputs: not on raw pixels
    assert {x["detector"] for x in sec["detectors_skipped"]} == {"ks_inputs"}
    if which == "noisy":
        assert true_acc < acc_cal - 0.1  # the planted shift costs accuracy
        assert drift["bbsd_soft"] and drift["confidence"], drift
        for k in ("atc", "doc", "average_confidence"):  # each moves from the calib accuracy towards the truth
            assert true_acc < est[k] < acc_cal - 0.03, (k, est[k], true_acc)
    else:
        assert not any(drift.values()), drift
        assert abs(est["atc"] - true_acc) < 0.08 and abs(est["doc"] - true_acc) < 0.08
    assert "accuracy" in sec["needs_labels"]["not measured"]
    report = (tmp_path / "run" / "report.md").read_text()
    assert f"## Unlabelled data ({sec['n']} items)" in report


def test_unlabelled_rows_are_encoded_with_the_train_splits_vocabularies_and_input_drift_is_found(user, tmp_path):  # noqa: F811
    """A table's unlabelled rows: one-hot and imputation fitted on the labelled train split only
    (a category it never shows is all zeros), standardized with train statistics; a +3 std shift
    planted in one column is flagged by the feature-wise KS test, the same rows unshifted are not."""
    r, df = user["root"], user["df"]
    rows = df.drop(columns=["target"]).sample(200, random_state=0)  # the labelled rows' distribution
    rows.loc[rows.index[:5], "site"] = "west"  # a category train never shows
    rows.to_csv(tmp_path / "clean.csv", index=False)
    shifted = rows.copy()
    shifted["mean_radius"] = shifted["mean_radius"] + 3 * df["mean_radius"].std()
    shifted.to_csv(tmp_path / "shifted.csv", index=False)
    out = {}
    for name in ("clean", "shifted"):
        ctx, s = run_in_process(*QUICK, "data=table", f"data.path={r / 'rows.csv'}", "data.id=patient",
                                "data.features=null", f"data.unlabelled={tmp_path / (name + '.csv')}",
                                "variants=[]", run_dir=tmp_path / name / "run", cache=tmp_path / "cache")
        out[name] = (ctx, s)
    ctx, s = out["clean"]
    names = ctx.data.meta.feature_names
    u = ctx.data.unlabelled.numpy()
    norm = ctx.data.meta.normalization
    raw = u * np.array(norm["std"]) + np.array(norm["mean"])
    j = names.index("site_north"), names.index("site_south")
    assert np.allclose(raw[:5, list(j)], 0, atol=1e-5)  # "west": all zeros
    expect_north = (rows["site"].iloc[5:] == "north").to_numpy().astype(float)
    assert np.allclose(raw[5:, j[0]], expect_north, atol=1e-5)
    assert np.allclose(raw[:, names.index("mean_radius")], rows["mean_radius"], rtol=1e-5)
    assert s["inputs"]["data"]["unlabelled"]["rows"] == 200
    assert not s["unlabelled"]["variants"]["baseline"]["drift"]["ks_inputs"]["drift"]
    assert out["shifted"][1]["unlabelled"]["variants"]["baseline"]["drift"]["ks_inputs"]["drift"]


def test_an_unlabelled_image_folder_is_decoded_like_the_labelled_one(user, tmp_path):  # noqa: F811
    r = user["root"]
    flat = tmp_path / "inbox"
    files = sorted((r / "images").glob("*/*.png"))[::9]
    for i, p in enumerate(files):  # no class folders: any layout
        (flat / f"batch{i % 2}").mkdir(parents=True, exist_ok=True)
        Image.open(p).save(flat / f"batch{i % 2}" / f"{i:04d}.png")
    ctx, s = run_in_process(*QUICK, "data=image_folder", f"data.root={r / 'images'}", "data.mode=L",
                            f"data.unlabelled={flat}", "model=torch", f"model.script={r / 'net.py'}", "model.arch=Net",
                            f"model.weights={r / 'net.safetensors'}", "train=none", "variants=[]",
                            run_dir=tmp_path / "run", cache=tmp_path / "cache")
    mine = np.stack([np.asarray(Image.open(p), dtype=np.float32)[None] / 255 for p in sorted(
        flat.glob("*/*.png"), key=lambda p: (p.parent.name, p.name))])
    assert s["unlabelled"]["n"] == len(files) and np.array_equal(ctx.data.unlabelled.numpy(), mine)
    saved = np.load(tmp_path / "run" / "predictions" / "unlabelled.npz")
    assert np.allclose(saved["baseline"], _probs(user["net"], mine), atol=1e-5)

"""Reliability: bad inputs and faults give one clear line (or the documented outcome) and never
damage earlier results. Run alone with ``pytest -m reliability``."""

from __future__ import annotations

import errno
import hashlib
import io
import json
import os
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import run_cli, run_cli_cases, run_dirs

pytestmark = pytest.mark.reliability

FAST = ("debug=smoke", "variants=[]", "stress=none", "monitor=none", "datacheck=none", "eval.efficiency=false",
        "train.epochs=2")  # the stages these tests exercise: set-up, training, building, writing


# ------------------------------------------------------------------ files the cases read

def _npz(path: Path, **arrays) -> str:
    np.savez(path, **arrays)
    return str(path)


def _huge_header(path: Path) -> str:
    """An .npz whose x.npy header claims 10^12 rows but holds a few bytes."""
    buf = io.BytesIO()
    np.lib.format.write_array_header_1_0(buf, {"descr": "<f8", "fortran_order": False, "shape": (10**12, 4)})
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("x.npy", buf.getvalue() + b"\0" * 64)
        y = io.BytesIO()
        np.save(y, np.arange(10) % 2)
        z.writestr("y.npy", y.getvalue())
    return str(path)


def _onnx(path: Path, in_features: int, classes: int, rank4: bool = False) -> str:
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(in_features, classes))
    shape = (1, 1, 8, 8) if rank4 else (1, in_features)
    torch.onnx.export(model, torch.randn(*shape), str(path), input_names=["x"], output_names=["logits"],
                      dynamic_axes={"x": {0: "n"}}, dynamo=False)
    return str(path)


def _make_files(d: Path) -> dict[str, str]:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(300, 5))
    y = rng.integers(0, 3, 300)
    f = {
        "single_class": _npz(d / "single.npz", x=x, y=np.zeros(300, int)),
        "string_labels": _npz(d / "strings.npz", x=x, y=np.array(["a", "b", "c"] * 100)),
        "onehot": _npz(d / "onehot.npz", x=x, y=np.eye(3, dtype=int)[y]),
        "x_1d": _npz(d / "x1d.npz", x=x[:, 0], y=y),
        "empty": _npz(d / "empty.npz", x=np.zeros((0, 5)), y=np.zeros(0, int)),
        "group_len": _npz(d / "glen.npz", x=x, y=y, group=np.zeros(10, int)),
        "group_float": _npz(d / "gfloat.npz", x=x, y=y, group=rng.normal(size=300)),
        "missing_y": _npz(d / "noy.npz", x=x),
        "negative_labels": _npz(d / "neg.npz", x=x, y=y - 1),
        "float_labels": _npz(d / "fl.npz", x=x, y=y + 0.5),
        "nan_x": _npz(d / "nan.npz", x=np.where(rng.random(x.shape) < 0.01, np.nan, x), y=y),
        "inf_x": _npz(d / "inf.npz", x=np.where(rng.random(x.shape) < 0.01, np.inf, x), y=y),
        "string_x": _npz(d / "sx.npz", x=x.astype(str), y=y),
        "rows_mismatch": _npz(d / "rows.npz", x=x[:200], y=y),
        "image_2d": _npz(d / "img2d.npz", x=x, y=y),
        "object_array": str(d / "obj.npz"),
        "huge_header": _huge_header(d / "huge.npz"),
        "valid": _npz(d / "valid.npz", x=x, y=y),
        "label_million": _npz(d / "million.npz", x=x, y=np.where(np.arange(300) == 0, 10**6, y)),
        "no_features": _npz(d / "nofeat.npz", x=np.zeros((300, 0)), y=y),
        "float32_overflow": _npz(d / "ovf.npz", x=np.where(np.arange(1500).reshape(300, 5) == 7, 1e300, x), y=y),
    }
    np.savez(d / "obj.npz", x=np.array([{"a": 1}] * 300, dtype=object), y=y)
    (d / "zero.npz").write_bytes(b"")
    f["zero_bytes"] = str(d / "zero.npz")
    np.save(d / "plain.npy", x)
    f["plain_npy"] = str(d / "plain.npy")
    (d / "random.npz").write_bytes(os.urandom(4096))
    f["random_bytes"] = str(d / "random.npz")
    (d / "text.npz").write_text("x,y\n1,2\n")
    f["csv_as_npz"] = str(d / "text.npz")
    f["onnx_classes"] = _onnx(d / "classes.onnx", 64, 3)
    f["onnx_rank"] = _onnx(d / "rank.onnx", 5, 10)
    (d / "corrupt.onnx").write_bytes(os.urandom(2048))
    f["onnx_corrupt"] = str(d / "corrupt.onnx")
    exp = d / "conf" / "experiment"
    exp.mkdir(parents=True)
    (exp / "badname.yaml").write_text('# @package _global_\nvariants:\n  "../../x":\n    passes: []\n')
    (exp / "badkey.yaml").write_text('# @package _global_\nvariants:\n  ok:\n    passes: []\n    speed: 3\n')
    f["conf"] = str(d / "conf")
    return f


def _cases(f: dict[str, str]) -> list[tuple[str, list[str], str]]:
    """(id, command line, what the error line must mention)."""
    npz = lambda key, *more: ["data=npz", f"data.path={f[key]}", *more]  # noqa: E731
    mlb = [
        ("epochs_0", ["train.epochs=0"], "train.epochs"),
        ("epochs_neg", ["train.epochs=-1"], "train.epochs"),
        ("batch_neg", ["train.batch_size=-4"], "train.batch_size"),
        ("batch_0", ["train.batch_size=0"], "train.batch_size"),
        ("seed_neg", ["seed=-1"], "seed"),
        ("smoothing_1", ["train.label_smoothing=1.0"], "label_smoothing"),
        ("smoothing_neg", ["train.label_smoothing=-0.1"], "label_smoothing"),
        ("patience_neg", ["train.patience=-1"], "patience"),
        ("resamples_10", ["eval.bootstrap.resamples=10"], "resamples"),
        ("level_1_5", ["eval.bootstrap.level=1.5"], "level"),
        ("level_0", ["eval.bootstrap.level=0"], "level"),
        ("eval_batch_0", ["eval.batch_size=0"], "eval.batch_size"),
        ("min_calls_0", ["eval.latency.min_calls=0"], "min_calls"),
        ("latency_threads_neg", ["eval.latency.threads=-1"], "eval.latency.threads"),
        ("rounds_0", ["eval.timing.rounds=0"], "rounds"),
        ("tolerance_0", ["eval.timing.tolerance=0"], "tolerance"),
        ("batch_sizes_empty", ["eval.throughput.batch_sizes=[]"], "batch_sizes"),
        ("drop_flag_2", ["eval.accuracy_drop_flag=2"], "accuracy_drop_flag"),
        ("serving_bad", ["deployment.serving=stream"], "deployment.serving"),
        ("invariance_neg", ["deployment.invariance_items=-1"], "invariance_items"),
        ("threads_neg", ["backend.threads=-2"], "backend.threads"),
        ("threads_word", ["backend.threads=many"], "backend.threads"),
        ("train_threads_neg", ["train.threads=-1"], "train.threads"),
        ("calibration_view", ["eval.calibration=bogus"], "eval.calibration"),
        ("seeds_neg", ["seeds=[-3]"], "seeds"),
        ("test_split_0", ["data.test=0"], "data.test"),
        ("val_split_neg", ["data.val=-0.1"], "data.val"),
        ("device_tpu", ["device=tpu"], "device"),
        ("sparsity_1_5", ["variants=[prune50_ft]", "variants.prune50_ft.passes.0.sparsity=1.5"], "sparsity"),
        ("eps_neg", ["stress=[fgsm]", "stress.fgsm.eps=[-0.1]"], "eps"),
        ("attack_loss", ["stress=[fgsm]", "stress.fgsm.loss=nll"], "loss"),
        ("eps_too_big", ["stress=[fgsm]", "stress.fgsm.eps=[1.5]"], "eps"),
        ("image_stress_on_tabular", ["data=wine", "stress=[gaussian_noise]"], "gaussian_noise"),
        ("mnist_missing_root", ["data=mnist", "paths.data_root=/nonexistent"], "mnist"),
        ("variant_name_path", ["--config-dir=" + f["conf"], "experiment=badname"], "file name"),
        ("variant_unknown_key", ["--config-dir=" + f["conf"], "experiment=badkey"], "unknown key"),
        ("npz_missing_file", ["data=npz", "data.path=/nonexistent/d.npz"], "no such file"),
        ("npz_single_class", npz("single_class"), "two classes"),
        ("npz_string_labels", npz("string_labels"), "integer class indices"),
        ("npz_onehot", npz("onehot"), "one-hot"),
        ("npz_x_1d", npz("x_1d"), "2 dimensions"),
        ("npz_empty", npz("empty"), "no examples"),
        ("npz_group_len", npz("group_len"), "group"),
        ("npz_group_float", npz("group_float"), "group"),
        ("npz_zero_bytes", npz("zero_bytes"), "empty"),
        ("npz_plain_npy", npz("plain_npy"), ".npy"),
        ("npz_random_bytes", npz("random_bytes"), "not an .npz"),
        ("npz_csv", npz("csv_as_npz"), "not an .npz"),
        ("npz_huge_header", npz("huge_header"), "claims shape"),
        ("npz_missing_y", npz("missing_y"), "missing"),
        ("npz_negative_labels", npz("negative_labels"), "negative labels"),
        ("npz_float_labels", npz("float_labels"), "whole numbers"),
        ("npz_nan", npz("nan_x"), "NaN"),
        ("npz_inf", npz("inf_x"), "NaN/inf"),
        ("npz_string_x", npz("string_x"), "numeric"),
        ("npz_rows_mismatch", npz("rows_mismatch"), "labels"),
        ("npz_image_2d", npz("image_2d", "data.modality=image"), "(N, C, H, W)"),
        ("npz_num_classes", npz("single_class", "data.num_classes=1"), "two classes"),
        ("npz_pickled", npz("object_array"), "pickled"),
        ("npz_num_classes_small", npz("valid", "data.num_classes=2"), "num_classes"),
        ("npz_label_million", npz("label_million"), "labels run up to 1000000"),
        ("npz_no_features", npz("no_features"), "no features"),
        ("npz_float32_overflow", npz("float32_overflow"), "float32"),
        ("lr_nan", ["train.optimizer.lr=nan"], "train.optimizer.lr must be a finite number"),
        ("lr_inf", ["train.optimizer.lr=inf"], "train.optimizer.lr must be a finite number"),
        ("lr_neg", ["train.optimizer.lr=-1"], "learning rate"),
        ("weight_decay_neg", ["train.optimizer.weight_decay=-5"], "weight_decay"),
        ("val_nan", ["data.val=nan"], "data.val must be a finite number"),
        ("seed_timestamp", ["seed=1733412345123"], "seed must be in [0, 4294967295]"),
        ("min_time_inf", ["eval.latency.min_time_s=inf"], "min_time_s must be a finite number"),
        ("amp_fp8", ["train.amp=fp8"], "train.amp"),
        ("ort_level", ["backend.onnxruntime.graph_optimization=max"], "graph_optimization"),
        ("objective_mode", ["requirements.objective_mode=maxx"], "objective_mode"),
        ("stream_length_0", ["monitor=light", "monitor.stream_length=0"], "stream_length"),
        ("opset_5", ["variants=[onnx_fp32]", "variants.onnx_fp32.passes.0.opset=5"], "opset"),
    ]
    export = [
        ("export_output_txt", ["export.output=model.txt"], ".onnx"),
        ("export_variant_path", ["export.variant=../x"], "file name"),
        ("export_variant_unknown", ["export.variant=nope"], "no such variant"),
        ("export_torch_variant", ["export.variant=structured50_ft"], "ONNX"),
        ("export_source_missing", ["export.source=/nonexistent/m.onnx"], "no file"),
        ("export_source_corrupt", [f"export.source={f['onnx_corrupt']}"], "onnx"),
        ("export_source_classes", [f"export.source={f['onnx_classes']}"], "classes"),
        ("export_source_rank", [f"export.source={f['onnx_rank']}"], "input shape"),
    ]
    def argv(a):  # Hydra's flags first, then the overrides
        return [x for x in a if x.startswith("--")] + [*FAST, *(x for x in a if not x.startswith("--"))]
    return ([(i, argv(a), m) for i, a, m in mlb] + [(i, ["--export", *argv(a)], m) for i, a, m in export])


# ------------------------------------------------------------------ the corpus

def _tree_digest(*paths: Path) -> dict[str, str]:
    out = {}
    for root in paths:
        files = [root] if root.is_file() else sorted(p for p in root.rglob("*") if p.is_file())
        for p in files:
            out[str(p)] = hashlib.sha256(p.read_bytes()).hexdigest()
    return out


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    work = tmp_path_factory.mktemp("corpus")
    first = run_cli(*FAST, cwd=work)  # an earlier run, its cache entry and history row
    assert first.returncode == 0, first.stderr
    (earlier,) = run_dirs(work)
    files = _make_files(tmp_path_factory.mktemp("inputs"))
    cases = _cases(files)
    guarded = [earlier, work / "cache", work / "results" / "history.sqlite"]
    before = _tree_digest(*guarded)
    results = run_cli_cases(cases, work, tmp_path_factory.mktemp("logs"))
    after = _tree_digest(*guarded)
    return {"cases": cases, "results": results, "before": before, "after": after, "work": work,
            "earlier": earlier}


def test_corpus_is_large_enough(corpus):
    assert len(corpus["cases"]) >= 83


def test_earlier_results_cache_and_history_are_byte_identical(corpus):
    assert corpus["before"] == corpus["after"]
    runs = run_dirs(corpus["work"])
    assert runs == [corpus["earlier"]], "a failed run left a run directory behind"


@pytest.mark.parametrize("idx", range(66))
def test_bad_input_gives_one_error_line(corpus, idx):
    cases = corpus["cases"]
    if idx >= len(cases):
        pytest.skip("fewer cases")
    cid, args, must = cases[idx]
    out = corpus["results"][cid]
    lines = [ln for ln in out.stderr.splitlines() if ln.startswith("error:")]
    assert out.returncode == 2, (cid, out.returncode, out.stderr[-2000:])
    assert len(lines) == 1, (cid, out.stderr)
    assert "Traceback" not in out.stdout + out.stderr, cid
    assert must.lower() in lines[0].lower(), (cid, lines[0])


# ------------------------------------------------------------------ documented outcomes (exit 0)

def test_rewritten_npz_at_the_same_path_is_not_a_stale_cache_hit(tmp_path):
    rng = np.random.default_rng(1)
    x = rng.normal(size=(400, 6))
    path = tmp_path / "d.npz"
    np.savez(path, x=x, y=(x[:, 0] > 0).astype(int))
    args = ("data=npz", f"data.path={path}", "model=mlp", *FAST, "train.epochs=4")
    a = run_cli(*args, cwd=tmp_path)
    np.savez(path, x=x, y=(x[:, 1] > 0).astype(int))  # new labels, same path
    b = run_cli(*args, cwd=tmp_path)
    assert a.returncode == 0 and b.returncode == 0, b.stderr
    s = [json.loads((d / "summary.json").read_text()) for d in run_dirs(tmp_path)]
    assert s[0]["data"]["content_hash"] != s[1]["data"]["content_hash"]
    assert not s[1]["baseline_training"]["cache_hit"]
    assert s[1]["variants"]["baseline"]["metrics"]["accuracy"] > 0.8  # trained on the new labels


def test_corrupt_cache_warning_reaches_the_console_and_log(tmp_path):
    assert run_cli(*FAST, cwd=tmp_path).returncode == 0
    (entry,) = [p for p in (tmp_path / "cache").iterdir() if p.is_dir()]
    (entry / "meta.json").write_text("[]")
    out = run_cli(*FAST, cwd=tmp_path)
    assert out.returncode == 0
    assert "corrupt" in out.stdout + out.stderr
    logs = [p.read_text() for d in run_dirs(tmp_path) for p in d.glob("*.log")]
    assert any("corrupt" in t for t in logs)


@pytest.mark.parametrize("kind", ["corrupt", "readonly"])
def test_history_database_trouble_warns_and_the_run_stands(tmp_path, kind):
    db = tmp_path / "h" / "history.sqlite"
    db.parent.mkdir()
    db.write_bytes(os.urandom(8192))
    if kind == "readonly":
        db.write_bytes(b"")
        os.chmod(db, 0o444)
        db = Path("/proc/history.sqlite")  # not writable even for root
    out = run_cli(*FAST, f"paths.history_db={db}", cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    assert "history not recorded" in out.stdout + out.stderr
    (d,) = run_dirs(tmp_path)
    assert (d / "summary.json").is_file()


def test_compare_skips_bad_runs_and_says_why_when_none_is_left(smoke_run, tmp_path):
    import shutil
    run_dir, s, _ = smoke_run
    mix = tmp_path / "mix"
    shutil.copytree(run_dir, mix / "good")
    for name, content in [("list", b"[1, 2]"), ("nodata", json.dumps({k: v for k, v in s.items() if k != "data"}).encode()),
                          ("latin1", "{\"x\": \"\xe9\"}".encode("latin-1"))]:
        (mix / name).mkdir()
        (mix / name / "summary.json").write_bytes(content)
    bad_pred = mix / "good2"
    shutil.copytree(run_dir, bad_pred)
    (bad_pred / "predictions" / "onnx_fp32.npz").write_bytes(os.urandom(100))
    out = run_cli("compare", str(mix / "good"), str(bad_pred), str(mix / "list"), str(mix / "nodata"),
                  str(mix / "latin1"), "--out", str(tmp_path / "c"), cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    text = out.stdout + out.stderr
    assert "list" in text and "nodata" in text and "latin1" in text and "skipped" in text
    only_bad = run_cli("compare", str(mix / "list"), str(mix / "latin1"), cwd=tmp_path)
    assert only_bad.returncode == 2 and "no runs found" in only_bad.stderr and "not an object" in only_bad.stderr


def test_compare_defaults_follow_mlbench_results(smoke_run, tmp_path):
    run_dir, _, _ = smoke_run
    out = run_cli("compare", str(run_dir), cwd=tmp_path, env={"MLBENCH_RESULTS": str(tmp_path / "elsewhere")})
    assert out.returncode == 0 and (tmp_path / "elsewhere" / "compare").is_dir()


# ------------------------------------------------------------------ faults

KILL_AT = {  # where a run is killed with SIGKILL: (module, attribute, only when its first argument ends so)
    "training": ("mlbench.train.cache", "BaselineCache._store", ""),
    "building": ("mlbench.pipeline.variants", "build", ""),
    "writing": ("mlbench.pipeline.write", "write_json", "summary.json"),
}


def _run_killed_at(where: str, cwd: Path) -> subprocess.CompletedProcess:
    mod, attr, suffix = KILL_AT[where]
    owner, _, name = attr.rpartition(".")
    code = f"""import importlib, os, signal, sys
m = importlib.import_module({mod!r})
obj = getattr(m, {owner!r}) if {owner!r} else m
orig = getattr(obj, {name!r})
def fault(*a, **k):
    first = a[1] if {owner!r} else a[0]
    if str(first).endswith({suffix!r}):
        os.kill(os.getpid(), signal.SIGKILL)
    return orig(*a, **k)
setattr(obj, {name!r}, fault)
from mlbench.cli import main
sys.argv = ['mlbench', *sys.argv[1:]]
main()
"""
    env = {**os.environ, "MLBENCH_RESULTS": str(cwd / "results"), "MLBENCH_CACHE": str(cwd / "cache")}
    return subprocess.run([sys.executable, "-c", code, *FAST, "variants=[onnx_fp32]"], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=300)


@pytest.mark.parametrize("where", list(KILL_AT))
def test_kill_9_leaves_compare_and_cache_usable(where, tmp_path):
    killed = _run_killed_at(where, tmp_path)
    assert killed.returncode == -9, killed.stderr[-2000:]
    assert not list((tmp_path / "results").rglob("summary.json"))
    again = run_cli(*FAST, "variants=[onnx_fp32]", cwd=tmp_path)
    assert again.returncode == 0, again.stderr
    (done,) = run_dirs(tmp_path)
    out = run_cli("compare", str(tmp_path / "results"), "--out", str(tmp_path / "c"), cwd=tmp_path)
    assert out.returncode == 0 and "skipped" in out.stdout + out.stderr  # the killed run's folder
    s = json.loads((done / "summary.json").read_text())
    assert s["baseline_training"]["cache_hit"] == (where != "training")


def test_full_disk_is_one_error_line_and_earlier_results_stay(tmp_path):
    assert run_cli(*FAST, cwd=tmp_path).returncode == 0
    guarded = [tmp_path / "results", tmp_path / "cache"]
    before = _tree_digest(*guarded)
    code = ("import errno, sys, mlbench.results as r\n"
            "def full(*a, **k): raise OSError(errno.ENOSPC, 'No space left on device', str(a[0]))\n"
            "r.atomic_write = full\n"
            "from mlbench.cli import main; sys.argv = ['mlbench', *sys.argv[1:]]; main()")
    env = {**os.environ, "MLBENCH_RESULTS": str(tmp_path / "results"), "MLBENCH_CACHE": str(tmp_path / "cache")}
    out = subprocess.run([sys.executable, "-c", code, *FAST], cwd=tmp_path, env=env, capture_output=True,
                         text=True, timeout=300)
    assert out.returncode == 2 and out.stderr.count("error:") == 1 and "No space left" in out.stderr
    assert "Traceback" not in out.stderr
    assert _tree_digest(*guarded) == before
    assert len(run_dirs(tmp_path)) == 1


def test_cache_store_failure_keeps_the_trained_model(tmp_path, monkeypatch):
    from mlbench.train.cache import BaselineCache

    def broken(self, target):
        raise OSError(errno.ENOTEMPTY, "Directory not empty", str(target))

    monkeypatch.setattr(Path, "rename", broken)
    model = torch.nn.Linear(3, 2)
    trained = {}

    def train(m):
        with torch.no_grad():
            m.weight.fill_(0.5)
        trained["done"] = True
        return {"best_epoch": 1}

    meta, hit = BaselineCache(tmp_path / "c").load_or_train("k", model, train)
    assert trained and not hit and meta["cache_stored"] is False
    assert torch.all(model.weight == 0.5)
    assert not [p for p in (tmp_path / "c").iterdir() if p.is_dir()]  # no half entry left


def test_artifact_cache_store_failure_is_a_warning_and_a_later_get_misses(tmp_path, monkeypatch, caplog):
    """An ONNX artifact that cannot be kept (the rename fails) costs a warning, leaves no half
    entry, and the next lookup builds again; a stored entry comes back with its files' bytes."""
    from mlbench.compress import Artifact
    from mlbench.compress.cache import ArtifactCache
    src = tmp_path / "run" / "00_onnx_export.onnx"
    src.parent.mkdir()
    src.write_bytes(b"onnx bytes")
    art = Artifact(id="abc", format="onnx", path=src, files=[src], recipe=["onnx_export"])
    cache = ArtifactCache(tmp_path / "c")
    real = Path.rename

    def broken(self, target):
        raise OSError(errno.EACCES, "Permission denied", str(target))

    monkeypatch.setattr(Path, "rename", broken)
    assert cache.put(art) is False and "not stored" in caplog.text
    assert not [p for p in (tmp_path / "c" / "artifacts").iterdir()]  # no half entry left
    assert cache.get("abc", tmp_path / "w1") is None
    monkeypatch.setattr(Path, "rename", real)
    assert cache.put(art) is True
    back = cache.get("abc", tmp_path / "w2")
    assert back is not None and back.recipe == ["onnx_export"] and back.path == tmp_path / "w2" / src.name
    assert back.path.read_bytes() == b"onnx bytes"


def test_cache_entries_follow_the_umask_and_work_without_a_lock(tmp_path, monkeypatch):
    from filelock import FileLock

    from mlbench.train.cache import BaselineCache
    old = os.umask(0o002)
    try:
        model = torch.nn.Linear(3, 2)
        BaselineCache(tmp_path / "c").load_or_train("k", model, lambda m: {})
    finally:
        os.umask(old)
    entry = tmp_path / "c" / "k"
    assert entry.stat().st_mode & 0o777 == 0o775
    assert all(p.stat().st_mode & 0o777 == 0o664 for p in entry.iterdir())
    assert (tmp_path / "c" / "k.lock").stat().st_mode & 0o777 == 0o664

    def denied(self, *a, **k):
        raise PermissionError(errno.EACCES, "Permission denied", self.lock_file)

    monkeypatch.setattr(FileLock, "acquire", denied)
    meta, hit = BaselineCache(tmp_path / "c").load_or_train("k", torch.nn.Linear(3, 2), lambda m: {})
    assert hit


def _can_run_as(uid: int) -> str | None:
    if os.geteuid() != 0:
        return "needs root to start a process as a second user"
    try:
        probe = subprocess.run([sys.executable, "-c", "import mlbench"], user=uid, group=uid,
                               capture_output=True, cwd="/tmp")
    except OSError:
        probe = None
    return None if probe is not None and probe.returncode == 0 else "the second user cannot run this Python (its folders are private)"


def test_a_second_user_reuses_a_shared_cache():
    uid = 65534
    why = _can_run_as(uid)
    if why:
        pytest.skip(why)
    work = Path(tempfile.mkdtemp(dir="/tmp"))
    os.chmod(work, 0o777)
    cache = work / "cache"
    cache.mkdir()
    os.chown(cache, 0, uid)
    os.chmod(cache, 0o2775)
    env = {**os.environ, "MLBENCH_CACHE": str(cache), "HOME": str(work), "MPLCONFIGDIR": str(work)}
    old = os.umask(0o002)
    try:
        first = subprocess.run([sys.executable, "-m", "mlbench", *FAST, f"paths.results_dir={work}/a"],
                               env=env, cwd=work, capture_output=True, text=True)
        second = subprocess.run([sys.executable, "-m", "mlbench", *FAST, f"paths.results_dir={work}/b"],
                                env=env, cwd=work, capture_output=True, text=True, user=uid, group=uid, umask=0o002)
    finally:
        os.umask(old)
    assert first.returncode == 0 and second.returncode == 0, second.stderr
    (s,) = [json.loads(p.read_text()) for p in (work / "b").rglob("summary.json")]
    assert s["baseline_training"]["cache_hit"]

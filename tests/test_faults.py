"""Faults from the environment and the user, through the real entry points: full disks (a real
tmpfs where the machine allows mounting one), two processes at once, reused run folders,
Ctrl-C, damaged cycle state, the Python API's argument types, non-UTF-8 output. Each case
states the outcome docs/reliability.md promises. Run alone with ``pytest -m reliability``."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from conftest import run_cli, run_cli_cases, run_dirs

import mlbench
from mlbench.errors import MlbenchError

pytestmark = pytest.mark.reliability

F = ("debug=smoke", "datacheck=none", "monitor=none", "stress=none", "eval.efficiency=false", "train.epochs=2")
CYCLE = ("cycle", "debug=smoke", "cycle.periods=4", "cycle.scaling=[]", "cycle.epochs=1",
         "cycle.schedule=[{from: 0, kind: none}, {from: 2, kind: covariate, corruption: auto, param: 3}]")


def _env(cwd: Path, **more: str) -> dict:
    return {**os.environ, "MLBENCH_RESULTS": str(cwd / "results"), "MLBENCH_CACHE": str(cwd / "cache"),
            "PYTHONUNBUFFERED": "1", "HYDRA_FULL_ERROR": "0", **more}


def _start(args: list[str], cwd: Path, env: dict, module: str = "mlbench.cli") -> subprocess.Popen:
    """The real command in a new interpreter (what a user's shell starts), output piped. SIGINT
    is restored to its default in the child: a shell that started these tests in the background
    leaves it ignored, and an interpreter started with SIGINT ignored never sees a Ctrl-C."""
    code = f"import sys; from {module} import main; sys.argv = ['mlbench', *sys.argv[1:]]; main()"
    return subprocess.Popen([sys.executable, "-c", code, *args], cwd=cwd, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))


def _wait_for(proc: subprocess.Popen, marker: str, timeout: float = 120) -> str:
    """Read the process's stdout until a line contains ``marker``; returns what was read."""
    seen, end = [], time.monotonic() + timeout
    while time.monotonic() < end:
        line = proc.stdout.readline()
        if not line:
            break
        seen.append(line)
        if marker in line:
            return "".join(seen)
    proc.kill()
    raise AssertionError(f"never printed {marker!r}: {''.join(seen)[-2000:]} {proc.stderr.read()[-2000:]}")


def _one_error_line(out: subprocess.CompletedProcess | tuple, must: str = "") -> str:
    stderr = out.stderr if hasattr(out, "stderr") else out[1]
    lines = [ln for ln in stderr.splitlines() if ln.strip()]
    errors = [ln for ln in lines if ln.startswith("error:")]
    assert "Traceback" not in stderr, stderr[-3000:]
    assert len(errors) == 1, stderr[-3000:]
    assert must.lower() in errors[0].lower(), errors[0]
    return errors[0]


def _digest(root: Path) -> dict[str, str]:
    return {str(p): hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(root.rglob("*")) if p.is_file()}


# ------------------------------------------------------------------ a real small disk

@pytest.fixture
def small_disk(tmp_path):
    """A tmpfs of 24 MiB mounted under tmp_path, and a function that fills it to leave ``kb``
    KiB free. Skips (saying why) where mounting is not allowed."""
    mnt = tmp_path / "small"
    mnt.mkdir()
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=24m", "tmpfs", str(mnt)], capture_output=True, text=True)
    if r.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here ({r.stderr.strip() or r.returncode}); "
                    "the patched-writer test in test_reliability.py covers the code path")

    def fill(kb: int) -> Path:
        free = shutil.disk_usage(mnt).free // 1024
        subprocess.run(["dd", "if=/dev/zero", f"of={mnt / 'filler'}", "bs=1k", f"count={max(free - kb, 0)}"],
                       capture_output=True, check=False)
        return mnt

    yield fill
    subprocess.run(["umount", "-l", str(mnt)], capture_output=True)


def test_a_full_disk_under_the_cycle_is_an_error_not_failed_updates(small_disk, tmp_path):
    disk = small_disk(1300)
    out = run_cli(*CYCLE, "seed=5", cwd=tmp_path, env={"MLBENCH_CACHE": str(disk / "cache")})
    assert out.returncode == 2, out.stdout[-2000:] + out.stderr[-2000:]
    _one_error_line(out, "No space left on device")
    assert not list((tmp_path / "results").rglob("summary.json"))  # nothing recorded as a result


def test_a_full_disk_while_saving_the_baseline_is_one_line(small_disk, tmp_path):
    disk = small_disk(150)  # less than the baseline's 300 KB checkpoint
    out = run_cli(*F, "variants=[]", cwd=tmp_path, env={"MLBENCH_RESULTS": str(disk / "results")})
    assert out.returncode == 2, out.stdout[-2000:] + out.stderr[-2000:]
    _one_error_line(out, "No space left on device")
    assert not list((disk / "results").rglob("summary.json"))
    assert not [p for p in (disk / "results").rglob("*") if p.is_dir() and p.name.endswith("_digits_cnn")]


# ------------------------------------------------------------------ two processes at once

def test_two_cycles_of_one_config_the_second_is_refused(tmp_path):
    env = _env(tmp_path)
    slow = ("cycle.periods=12", "cycle.epochs=40")  # the first is still running when the second starts
    first = _start([*CYCLE, *slow, "hydra.run.dir=out/first"], tmp_path, env)
    try:
        _wait_for(first, "period  0")  # the first holds the state folder's lock from here on
        second = run_cli(*CYCLE, *slow, "hydra.run.dir=out/second", cwd=tmp_path)
        assert second.returncode == 2, second.stdout[-2000:] + second.stderr[-2000:]
        _one_error_line(second, "another mlbench cycle of this configuration is running")
        assert not (tmp_path / "out" / "second").exists()
    finally:
        first.send_signal(signal.SIGINT)
        _, err = first.communicate(timeout=120)
    assert first.returncode == 130 and "Traceback" not in err and "cycle.resume=true" in err


def test_a_run_folder_is_never_written_twice(tmp_path):
    done = tmp_path / "runs" / "done"
    first = run_cli(*F, "variants=[]", f"hydra.run.dir={done}", cwd=tmp_path)
    assert first.returncode == 0, first.stderr
    before = _digest(done)
    cases = [("failing", [*F, "train.epochs=0", f"hydra.run.dir={done}"]),
             ("rerun", [*F, "variants=[]", f"hydra.run.dir={done}"]),
             ("sweep", ["-m", *F, "variants=[]", "seed=1,2", f"hydra.sweep.dir={done}"])]
    outs = run_cli_cases(cases, tmp_path, tmp_path)
    for cid, _ in cases:
        assert outs[cid].returncode == 2, (cid, outs[cid].stderr)
        _one_error_line(outs[cid], "exists and is not empty")
    assert _digest(done) == before  # provenance (.hydra) and results untouched


def test_two_runs_started_at_once_in_one_folder_leave_one_whole_run(tmp_path):
    env = _env(tmp_path)
    procs = [_start([*F, "variants=[]", f"seed={s}", "hydra.run.dir=shared"], tmp_path, env) for s in (1, 2)]
    outs = [p.communicate(timeout=300) for p in procs]
    codes = sorted(p.returncode for p in procs)
    assert codes == [0, 2], [o[1][-1500:] for o in outs]
    loser = outs[[p.returncode for p in procs].index(2)]
    _one_error_line(loser, "")
    s = json.loads((tmp_path / "shared" / "summary.json").read_text())
    winner_seed = 1 + [p.returncode for p in procs].index(0)
    assert s["run"]["config"]["seed"] == winner_seed


# ------------------------------------------------------------------ Ctrl-C

@pytest.mark.parametrize("command,marker", [
    ([*F, "variants=[onnx_fp32]", "train.epochs=400", "train.patience=0"], "data digits"),
    (["monitor", *F, "monitor=light", "train.epochs=400", "train.patience=0"], "data digits"),
    (["--export", "debug=smoke", "train.epochs=400", "train.patience=0"], "data digits"),
], ids=["mlbench", "monitor", "export"])
def test_ctrl_c_is_one_line_and_leaves_no_folder(tmp_path, command, marker):
    module = "mlbench.export" if command[0] == "--export" else "mlbench.cli"
    proc = _start([a for a in command if a != "--export"], tmp_path, _env(tmp_path), module)
    _wait_for(proc, marker)
    time.sleep(1.0)  # inside training
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err[-2000:]
    assert "Traceback" not in err and "interrupted" in err
    assert not run_dirs(tmp_path) and not [p for p in (tmp_path / "results").rglob(".hydra")]
    assert not (tmp_path / "model.onnx").exists()


def test_ctrl_c_in_compare_and_a_closed_pipe(smoke_run, tmp_path):
    run_dir = smoke_run[0]
    proc = _start(["compare", str(run_dir), "--out", str(tmp_path / "c")], tmp_path, _env(tmp_path))
    time.sleep(0.8)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode in (0, 130) and "Traceback" not in err, err  # 0: it finished first
    # `mlbench compare ... | head -1`: the reader closes the pipe early
    proc = _start(["compare", str(run_dir), "--out", str(tmp_path / "d")], tmp_path, _env(tmp_path))
    proc.stdout.readline()
    proc.stdout.close()
    err = proc.stderr.read()
    proc.wait(timeout=60)
    assert proc.returncode == 0 and "Traceback" not in err and "Broken pipe" not in err, err


# ------------------------------------------------------------------ results that must not be read as right

def test_compare_skips_summaries_with_nan_or_impossible_values(smoke_run, tmp_path):
    run_dir, s, _ = smoke_run
    tree = tmp_path / "tree"
    good = tree / "good"
    shutil.copytree(run_dir, good)
    text = (run_dir / "summary.json").read_text()
    nan = tree / "nan"
    shutil.copytree(run_dir, nan)
    acc = s["variants"]["baseline"]["metrics"]["accuracy"]
    (nan / "summary.json").write_text(text.replace(json.dumps(acc), "NaN", 1))
    for name, key, value in (("acc", "accuracy", 1.7), ("size", "size_bytes", -5)):
        bad = tree / name
        shutil.copytree(run_dir, bad)
        doc = json.loads(text)
        doc["variants"]["baseline"]["metrics"][key] = value
        (bad / "summary.json").write_text(json.dumps(doc))
    probs = tree / "probs"
    shutil.copytree(run_dir, probs)
    f = dict(np.load(probs / "predictions" / "onnx_fp32.npz"))
    f["probs"] = -f["probs"]
    np.savez(probs / "predictions" / "onnx_fp32.npz", **f)
    out = run_cli("compare", str(tree), "--out", str(tmp_path / "out"), cwd=tmp_path)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    for name, why in (("nan", "NaN is not a JSON number"), ("acc", "accuracy: 1.7 outside"),
                      ("size", "size_bytes: -5 outside")):
        assert f"{name}/summary.json" in out.stdout and why in out.stdout, (name, out.stdout[-3000:])
    assert "not probabilities" in out.stdout + out.stderr  # the paired cross-run figures leave that run out
    rows = (tmp_path / "out" / "compare.csv").read_text()
    assert "good" in rows and "/acc" not in rows and "nan" not in rows
    bad_metric = run_cli("compare", str(good), "--metrics", "accurcy", cwd=tmp_path)
    assert bad_metric.returncode == 2
    _one_error_line(bad_metric, "did you mean accuracy")


# ------------------------------------------------------------------ the command line's grammar and options

def test_command_line_mistakes_are_one_line_before_any_work(tmp_path):
    cases = [
        ("subcommand", ["comapre", "results/runs"], "did you mean compare"),
        ("stray_word", [*F, "variants=[]", "oops"], "neither an option"),
        ("non_ascii", [*F, "data=npz", "data.path=/tmp/données.npz"], "needs quotes"),
        ("sweep_key", ["-m", *F, "train.epoch=1,2"], "sweep job 0"),
        ("sweep_value", ["-m", *F, "train.epochs=2,0"], "train.epochs must be >= 1"),
        ("sweep_pass", ["-m", *F, "variants=[prune50_ft]", "variants.prune50_ft.passes.0.sparsity=0.5,1.5"],
         "sparsity must be in"),
        ("sweep_config_params", ["-m", *F, "sweep=sparsity", "variants.prune50_ft.passes.0.sparsity=1.5"],
         "sparsity must be in"),  # the command line wins over the sweep config's params, checked first
        ("export_positional", ["--export", "onnx_fp32", "model.onnx"], "takes key=value options"),
        ("cycle_target", ["cycle", "debug=smoke", "cycle.accuracy_target=2"], "accuracy_target"),
    ]
    outs = run_cli_cases(cases, tmp_path, tmp_path)
    for cid, _, must in cases:
        assert outs[cid].returncode == 2, (cid, outs[cid].stdout[-1500:], outs[cid].stderr[-1500:])
        _one_error_line(outs[cid], must)
    assert not (tmp_path / "results").exists() or not list((tmp_path / "results").rglob("*.json"))
    assert not list((tmp_path / "multirun").glob("*")) if (tmp_path / "multirun").exists() else True


def test_a_diverged_training_is_an_error_and_caches_nothing(tmp_path):
    out = run_cli(*F, "variants=[]", "train.optimizer.lr=1e30", cwd=tmp_path)
    assert out.returncode == 2, out.stdout[-1500:]
    _one_error_line(out, "validation loss was not finite in any")
    assert not run_dirs(tmp_path) and not list((tmp_path / "cache").glob("*/meta.json"))


def test_an_empty_results_variable_never_writes_to_the_root(tmp_path):
    before = {p.name for p in Path("/").iterdir()}
    out = run_cli(*F, "variants=[]", cwd=tmp_path, env={"MLBENCH_RESULTS": ""})
    assert out.returncode == 2
    _one_error_line(out, "MLBENCH_RESULTS is set but empty")
    assert {p.name for p in Path("/").iterdir()} == before


def test_export_leaves_no_run_folder_and_checks_its_output_path(tmp_path):
    ok = run_cli("debug=smoke", "export.output=dist/m.onnx", cwd=tmp_path, module="mlbench.export")
    assert ok.returncode == 0, ok.stderr[-2000:]
    assert (tmp_path / "dist" / "m.onnx").is_file() and (tmp_path / "dist" / "m.json").is_file()
    assert not (tmp_path / "results" / "runs").exists()
    (tmp_path / "folder.onnx").mkdir()
    (tmp_path / "afile").write_text("x")
    for output, must in (("folder.onnx", "is a folder"), ("afile/m.onnx", "is a file, not a folder")):
        out = run_cli("debug=smoke", f"export.output={output}", cwd=tmp_path, module="mlbench.export")
        assert out.returncode == 2, out.stderr[-2000:]
        _one_error_line(out, must)
    assert not (tmp_path / "results" / "runs").exists()


def test_non_utf8_output_does_not_fail_the_run(tmp_path):
    out = run_cli(*F, "variants=[]", cwd=tmp_path, env={"PYTHONIOENCODING": "ascii"}, fresh=True)
    assert out.returncode == 0, out.stderr[-2000:]
    assert "Traceback" not in out.stderr and len(run_dirs(tmp_path)) == 1


# ------------------------------------------------------------------ damaged cycle state

def test_a_damaged_cycle_state_is_an_error_never_a_silent_restart(tmp_path):
    first = run_cli(*CYCLE, cwd=tmp_path)
    assert first.returncode == 0, first.stderr[-2000:]
    (state,) = (tmp_path / "cache" / "cycles").glob("*/state.json")
    good = state.read_text()
    doc = json.loads(good)
    edits = {"truncated": good[: len(good) // 2],
             "policy_removed": json.dumps({**doc, "policies": {k: v for k, v in doc["policies"].items()
                                                               if k != "drift"}})}
    for case, text in edits.items():
        state.write_text(text)
        out = run_cli(*CYCLE, "cycle.resume=true", cwd=tmp_path)
        assert out.returncode == 2, (case, out.stdout[-1500:], out.stderr[-1500:])
        _one_error_line(out, "is damaged")
        assert state.read_text() == text  # the state is left as it was, for the user to look at


# ------------------------------------------------------------------ the Python API

def test_the_python_api_checks_its_argument_types(smoke_run, tmp_path):
    run_dir = smoke_run[0]
    calls = [
        (lambda: mlbench.compare(str(run_dir)), "list of run or sweep folders"),
        (lambda: mlbench.compare([run_dir], metrics="accuracy"), "list of metric names"),
        (lambda: mlbench.compare([run_dir], metrics=["accurcy"]), "did you mean accuracy"),
        (lambda: mlbench.run("data=wine"), "not a single string"),
        (lambda: mlbench.run([1]), "list of strings"),
        (lambda: mlbench.run(["hydra.run.dir=x"]), "run_dir"),
        (lambda: mlbench.run(["debug=smoke"], run_dir=tmp_path / "file"), "is a file"),
        (lambda: mlbench.Summary.load(tmp_path / "list"), "a JSON list"),
        (lambda: mlbench.Summary.load(tmp_path / "future"), "schema_version 99"),
    ]
    (tmp_path / "file").write_text("x")
    (tmp_path / "list").mkdir()
    (tmp_path / "list" / "summary.json").write_text("[1, 2]")
    (tmp_path / "future").mkdir()
    (tmp_path / "future" / "summary.json").write_text(
        (run_dir / "summary.json").read_text().replace('"schema_version": 1', '"schema_version": 99', 1))
    for call, must in calls:
        with pytest.raises(MlbenchError, match=must.replace("(", r"\(")):
            call()


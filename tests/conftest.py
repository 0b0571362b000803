"""Shared fixtures: the real config, composed and shrunk for CPU."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

if os.environ.get("PYTEST_XDIST_WORKER"):
    # one intra-op thread per test worker (and per CLI run it starts): with as many workers as
    # cores, torch's default of all cores per process oversubscribes the machine
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    import torch  # before mlbench reads torch's default thread count (its "physical cores")
    torch.set_num_threads(1)

import pytest  # noqa: E402
from hydra import compose, initialize_config_dir  # noqa: E402
from hydra.core.global_hydra import GlobalHydra  # noqa: E402

from mlbench.schema import CONF_DIR, register  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
register()


@pytest.fixture
def make_cfg(tmp_path):
    """Compose the real config with overrides; results and cache go to tmp_path."""

    def _make(*overrides: str, smoke: bool = True):
        return compose_config(*overrides, results=tmp_path / "results", cache=tmp_path / "cache", smoke=smoke)

    return _make


def compose_config(*overrides: str, results: Path, cache: Path, smoke: bool = True):
    """The real config composed with ``overrides`` (results and cache under the given folders)."""
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        ov = [f"paths.results_dir={results}", f"paths.cache_dir={cache}", *overrides, *(["debug=smoke"] if smoke else [])]
        cfg = compose("config", overrides=ov)
    GlobalHydra.instance().clear()
    return cfg


def run_in_process(*overrides: str, run_dir: Path, cache: Path, stages=None, smoke: bool = True):
    """A run in this process (no CLI: for tests that need the figures, not the exit status):
    ``stages`` (default: all) on the composed config, then the write stage. Returns the run
    context and summary.json's content."""
    from mlbench import pipeline
    cfg = compose_config(*overrides, results=run_dir.parent, cache=cache, smoke=smoke)
    run_dir.mkdir(parents=True, exist_ok=True)
    ctx = pipeline.RunContext(cfg=cfg, run_dir=run_dir)
    pipeline.timed_stages(ctx, pipeline.STAGES if stages is None else stages)
    return ctx, pipeline.write(ctx)


@pytest.fixture
def run_stages(tmp_path):
    """``run_in_process`` with the run folder and cache under this test's tmp_path."""
    def _run(*overrides: str, stages=None, smoke: bool = True):
        return run_in_process(*overrides, run_dir=tmp_path / "run", cache=tmp_path / "cache", stages=stages,
                              smoke=smoke)
    return _run


def preset(group: str, option: str, **overrides):
    """The component ``group=option`` of the real config (its YAML holds every default),
    instantiated with ``overrides`` (nested ``_target_`` entries left to the component)."""
    from hydra.utils import instantiate
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        cfg = compose("config", overrides=[f"{group}={option}"])
    GlobalHydra.instance().clear()
    try:
        return instantiate(cfg[group], _recursive_=False, **overrides)
    except Exception as e:  # Hydra wraps the constructor's error: raise that one
        cause = e
        while cause.__cause__ is not None:
            cause = cause.__cause__
        raise cause from None


_zygote: subprocess.Popen | None = None


def _start_zygote() -> subprocess.Popen:
    return subprocess.Popen([sys.executable, str(Path(__file__).with_name("forkserver.py"))], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, text=True, cwd=ROOT)


def _send(zygote: subprocess.Popen, args: list[str], cwd: Path, env: dict, module: str, out: Path, err: Path) -> None:
    """Ask ``zygote`` to fork one CLI run; it answers with the exit code on a line of its own."""
    zygote.stdin.write(json.dumps({"args": args, "cwd": str(cwd), "env": env, "module": module,
                                   "out": str(out), "err": str(err)}) + "\n")
    zygote.stdin.flush()


def _fork_run(args: list[str], cwd: Path, env: dict, module: str, timeout: int) -> subprocess.CompletedProcess:
    """One CLI run in a process forked from a per-worker one that imported mlbench once."""
    import select
    import tempfile
    global _zygote
    if _zygote is None or _zygote.poll() is not None:
        _zygote = _start_zygote()
    with tempfile.TemporaryDirectory() as logs:
        out, err = Path(logs) / "out", Path(logs) / "err"
        _send(_zygote, args, cwd, env, module, out, err)
        if not select.select([_zygote.stdout], [], [], timeout)[0]:
            _zygote.kill()
            raise subprocess.TimeoutExpired(args, timeout)
        line = _zygote.stdout.readline()
        assert line, "the CLI test driver died"
        return subprocess.CompletedProcess(args, json.loads(line), out.read_text(), err.read_text())


def run_cli(*args: str, cwd: Path, env: dict | None = None, module: str = "mlbench.cli",
            timeout: int = 600, fresh: bool = False) -> subprocess.CompletedProcess:
    """Run the real entry point (what a user types): ``main()`` of ``module`` with ``args`` as
    the command line, in ``cwd``, results and cache under ``cwd``. By default in a process forked
    from one that already imported mlbench (the same code path after the imports, without paying
    them again for every run); ``fresh``: in a new interpreter."""
    e = {**os.environ, "MLBENCH_RESULTS": str(cwd / "results"), "MLBENCH_CACHE": str(cwd / "cache"),
         **(env or {})}
    if not fresh and hasattr(os, "fork"):
        return _fork_run(list(args), cwd, e, module, timeout)
    code = f"import sys; from {module} import main; sys.argv = ['mlbench', *sys.argv[1:]]; main()"
    return subprocess.run([sys.executable, "-c", code, *args], cwd=cwd, env=e, capture_output=True,
                          text=True, timeout=timeout)


def run_cli_cases(cases: list[tuple], cwd: Path, logs: Path, processes: int = 2) -> dict[str, subprocess.CompletedProcess]:
    """Many command lines (``(case id, argv, ...)``; an argv starting with ``--export`` runs
    ``mlbench-export``), each run like ``run_cli`` (forked from a process that imported mlbench
    once), ``processes`` at a time, in ``cwd``; each case's output goes to ``logs``. Returns each
    case's exit code and output by id."""
    import select
    env = {**os.environ, "MLBENCH_RESULTS": str(cwd / "results"), "MLBENCH_CACHE": str(cwd / "cache"),
           "HYDRA_FULL_ERROR": "0"}
    work = [(cid, list(args)) for cid, args, *_ in cases]
    pending, running, codes = list(reversed(work)), {}, {}
    zygotes = [_start_zygote() for _ in range(min(processes, len(work)))]

    def feed(z: subprocess.Popen) -> None:
        cid, args = pending.pop()
        module = "mlbench.export" if args[:1] == ["--export"] else "mlbench.cli"
        _send(z, [a for a in args if a != "--export"], cwd, env, module, logs / f"{cid}.out", logs / f"{cid}.err")
        running[z] = cid

    try:
        for z in zygotes:
            feed(z)
        while running:
            ready = select.select([z.stdout for z in running], [], [], 600)[0]
            assert ready, "a command line ran for more than 600 s"
            for z in [z for z in running if z.stdout in ready]:
                line = z.stdout.readline()
                assert line, "the CLI test driver died"
                codes[running.pop(z)] = json.loads(line)
                if pending:
                    feed(z)
    finally:
        for z in zygotes:
            z.kill()
    return {cid: subprocess.CompletedProcess(args, codes[cid], (logs / f"{cid}.out").read_text(),
                                             (logs / f"{cid}.err").read_text()) for cid, args in work}


def run_dirs(root: Path) -> list[Path]:
    return sorted(p.parent for p in (root / "results").rglob("summary.json"))


@pytest.fixture(scope="session")
def smoke_run(tmp_path_factory):
    """One real `mlbench debug=smoke` run with the default variants, shared by many tests (and
    by all test workers: the first to need it runs it, the others wait and read it). Tests read
    its folder and never write to it."""
    from filelock import FileLock

    shared = tmp_path_factory.getbasetemp()
    if os.environ.get("PYTEST_XDIST_WORKER"):
        shared = shared.parent  # the folder all workers' temporary folders sit in
    cwd, done = shared / "smoke_run", shared / "smoke_run.json"
    with FileLock(str(shared / "smoke_run.lock")):
        if not done.is_file():
            cwd.mkdir()
            out = run_cli("debug=smoke", "train.epochs=12", cwd=cwd)
            assert out.returncode == 0, out.stdout + out.stderr
            done.write_text(json.dumps({"args": out.args, "stdout": out.stdout, "stderr": out.stderr}))
    out = subprocess.CompletedProcess(returncode=0, **json.loads(done.read_text()))
    (run_dir,) = run_dirs(cwd)
    return run_dir, json.loads((run_dir / "summary.json").read_text()), out


@pytest.fixture(scope="session")
def digits_model():
    """The digits CNN trained for 10 epochs (about 98 % test accuracy), shared by stress tests."""
    import functools

    import torch

    from mlbench.data import Digits
    from mlbench.models import CNN
    from mlbench.train import fit
    d = Digits().load()
    torch.manual_seed(0)
    m = CNN(d.meta.input_shape, 10, channels=(16, 32), hidden=64)
    fit(m, d.x["train"], d.y["train"], d.x["val"], d.y["val"], epochs=10, batch_size=128,
        optimizer=functools.partial(torch.optim.AdamW, lr=3e-3))
    return d, m.eval()

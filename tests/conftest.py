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
        GlobalHydra.instance().clear()
        with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
            ov = [f"paths.results_dir={tmp_path}/results", f"paths.cache_dir={tmp_path}/cache", *overrides]
            if smoke:
                ov.append("debug=smoke")
            return compose("config", overrides=ov)

    return _make


def run_cli(*args: str, cwd: Path, env: dict | None = None, module: str = "mlbench.cli",
            timeout: int = 600) -> subprocess.CompletedProcess:
    """Run the real entry point in a subprocess (what a user types)."""
    code = f"import sys; from {module} import main; sys.argv = ['mlbench', *sys.argv[1:]]; main()"
    e = {**os.environ, "MLBENCH_RESULTS": str(cwd / "results"), "MLBENCH_CACHE": str(cwd / "cache"),
         **(env or {})}
    return subprocess.run([sys.executable, "-c", code, *args], cwd=cwd, env=e, capture_output=True,
                          text=True, timeout=timeout)


def run_dirs(root: Path) -> list[Path]:
    return sorted(p.parent for p in (root / "results").rglob("summary.json"))


@pytest.fixture(scope="session")
def smoke_run(tmp_path_factory):
    """One real `mlbench debug=smoke` run with the default variants, shared by many tests."""
    cwd = tmp_path_factory.mktemp("smoke")
    out = run_cli("debug=smoke", "train.epochs=12", cwd=cwd)
    assert out.returncode == 0, out.stdout + out.stderr
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

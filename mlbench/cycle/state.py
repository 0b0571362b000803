"""The update cycle's state: the model each policy has deployed, and the file the finished
periods are saved in (``<cache_dir>/cycles/<config hash>/state.json``, with the deployed
models' files beside it), so ``cycle.resume=true`` continues an interrupted cycle."""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from mlbench.backends import Runner
from mlbench.compress import Artifact, Facts
from mlbench.compress.formats import format_of
from mlbench.cycle.policies import Policy
from mlbench.errors import MlbenchError, first_line
from mlbench.models import count_params
from mlbench.monitor.detectors import ATC, View
from mlbench.train import load_weights

STATE_VERSION = 3


@dataclass
class Deployed:
    """A model in service: the artifact and its runner, the dense torch model it was compressed
    from (warm starts continue from it), and what its monitor compares against."""

    version: int
    trained_at: int | None  # the period at whose end it was trained (None: the initial model)
    train_periods: list[int]  # the periods whose training part it was trained on
    gate_periods: list[int]  # the periods whose held-out part its gate (and its monitor) read
    dense: torch.nn.Module
    artifact: Artifact
    runner: Runner
    folder: Path
    reference: View | None = None
    detectors: dict = field(default_factory=dict)
    atc: ATC | None = None
    figures: dict[str, float] = field(default_factory=dict)  # size, latency when it was deployed

    def describe(self, root: Path) -> dict[str, Any]:
        return {"version": self.version, "trained_at": self.trained_at, "train_periods": self.train_periods,
                "gate_periods": self.gate_periods,
                "folder": str(self.folder.relative_to(root)), "format": self.artifact.format, "id": self.artifact.id,
                "path": None if self.artifact.path is None else str(self.artifact.path.relative_to(root)),
                "files": [str(f.relative_to(root)) for f in self.artifact.files], "figures": self.figures}


@dataclass
class PolicyState:
    """One timeline: a policy (with the acquisition strategy it buys labels by, if any) and
    what it has deployed, scored and labelled so far."""

    policy: Policy
    deployed: Deployed
    previous: Deployed | None = None  # the model the last deployment replaced (scored beside it)
    rows: list[dict] = field(default_factory=list)
    errors: list[int] = field(default_factory=list)  # error stream of the deployed version so far
    preds: dict[int, list[int]] = field(default_factory=dict)  # period -> predictions, until labels arrive
    stream_detector: Any = None
    name: str = ""  # the timeline's name: the policy's, + the strategy when labels are bought
    strategy: str | None = None
    labelled: dict[int, list[int]] = field(default_factory=dict)  # period -> positions whose labels were bought


def view(probs: torch.Tensor, x: torch.Tensor) -> View:
    return View(x.flatten(1).double().numpy(), None, probs.double().numpy())


def save_state(engine: Any, states: dict[str, PolicyState], done: int) -> None:
    """Write every policy's rows, error stream and deployed model after period ``done``."""
    out = {"version": STATE_VERSION, "key": engine.key, "done": done,
           "policies": {n: {"rows": ps.rows, "errors": ps.errors, "preds": {str(k): v for k, v in ps.preds.items()},
                            "labelled": {str(k): v for k, v in ps.labelled.items()},
                            "deployed": ps.deployed.describe(engine.state_dir),
                            "previous": None if ps.previous is None else ps.previous.describe(engine.state_dir)}
                        for n, ps in states.items()}}
    tmp = engine.state_dir / "state.json.tmp"
    tmp.write_text(json.dumps(out))
    tmp.replace(engine.state_dir / "state.json")

def restore_state(engine: Any, initial: Deployed) -> tuple[dict[str, PolicyState], int] | None:
    """The saved state (None when there is none). A state that exists but cannot be read
    whole (truncated, hand-edited, another version, a missing model file) is an error,
    never a silent fresh start that would discard the finished periods."""
    f = engine.state_dir / "state.json"
    if not f.is_file():
        return None

    def damaged(why: str) -> MlbenchError:
        return MlbenchError(f"cycle.resume: the saved state {f} is damaged ({why}); nothing was changed: "
                            "run without cycle.resume=true to start afresh")
    try:
        st = json.loads(f.read_text())
    except (OSError, ValueError) as e:
        raise damaged(f"{type(e).__name__}: {first_line(e)}") from None
    if not isinstance(st, dict) or st.get("version") != STATE_VERSION or st.get("key") != engine.key:
        raise damaged(f"not a version-{STATE_VERSION} state of this configuration")
    states = {}
    try:
        for name, pol, strategy in engine.cyc.tracks:
            if name not in st["policies"]:
                raise damaged(f"no entry for policy {name!r}")
            s = st["policies"][name]
            labelled = {int(k): v for k, v in s["labelled"].items()}
            dep = reload_deployed(engine, s["deployed"], initial, labelled)
            prev = None if s["previous"] is None else reload_deployed(engine, s["previous"], initial, labelled)
            ps = PolicyState(pol, dep, prev, list(s["rows"]), [], {int(k): v for k, v in s["preds"].items()},
                             engine.new_stream_detector(), name, strategy, labelled)
            for e in s["errors"]:  # replay: the detector's state is a function of its stream
                ps.errors.append(e)
                ps.stream_detector.update(e)
            states[name] = ps
        done = int(st["done"])
    except MlbenchError:
        raise
    except Exception as e:  # noqa: BLE001 - a damaged entry or saved model: one line, the state left as it is
        raise damaged(f"{type(e).__name__}: {first_line(e)}") from None
    return states, done

def reload_deployed(engine: Any, d: dict, initial: Deployed, labelled: dict[int, list[int]]) -> Deployed:
    """The deployed model a saved record names: its dense weights, and its artifact reloaded by
    its format (or rebuilt by the same deterministic recipe), watched again."""
    if d["version"] == 0:
        return initial
    folder = engine.state_dir / d["folder"]
    dense = load_weights(engine.model_factory(input_shape=engine.data.meta.input_shape,
                                            num_classes=engine.data.meta.num_classes), folder / "dense.safetensors")
    dense.eval()
    seed = engine._seed(d["trained_at"])
    bundle = engine.bundle(d["train_periods"], d["gate_periods"], seed, labelled)
    fields = format_of(d["format"]).reload(d, engine.state_dir)
    if fields is not None:
        art = Artifact(id=d["id"], format=d["format"], facts=Facts(*count_params(dense)), **fields)
    else:  # rebuilt from its dense weights by the same (deterministic) recipe
        art = engine.compress(dense, bundle, folder, seed, engine.device)
    dep = Deployed(d["version"], d["trained_at"], d["train_periods"], d["gate_periods"], dense, art,
                   engine.serve(art, engine.device), folder, figures=d["figures"])
    return engine.watch(dep, bundle.x["test"], bundle.y["test"])


@contextlib.contextmanager
def locked(state_dir: Path) -> Iterator[None]:
    """Hold the state folder's lock while the cycle uses it: a second cycle of the same
    configuration (the same state folder) is refused instead of sharing its files."""
    from filelock import FileLock, Timeout

    state_dir.mkdir(parents=True, exist_ok=True)
    lock = FileLock(str(state_dir) + ".lock")
    try:
        lock.acquire(timeout=0)
    except Timeout:
        raise MlbenchError(f"cycle: another mlbench cycle of this configuration is running (its state "
                           f"{state_dir} is locked); wait for it, or give this one another "
                           "seed or MLBENCH_CACHE") from None
    try:
        yield
    finally:
        lock.release()

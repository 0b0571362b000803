"""The update cycle: a simulated deployment over a stream that changes.

Each period, for every policy: score the period with the deployed model → monitor it (the
monitoring stage's detectors on the model's outputs, river's detector on the error stream of
the labels that have arrived, ATC's label-free accuracy estimate) → the policy decides → an
update: data checks on the new training data (the window's periods, every labelled period, or
the window with replayed original training items: ``cycle.train_data``), retrain (warm start
from the dense weights the deployed model was compressed from, or from scratch), rebuild the
deployment recipe (an option of ``conf/variants``), evaluate the candidate and the deployed
model on the gate's evidence (the never-trained-on share of the newest ``gate_periods``
labelled periods), and gate on the requirements → deploy only if every requirement passes. A
refused, failed or impossible update keeps the deployed model, so no period ends with nothing
deployed. The model a deployment replaced keeps scoring beside it until the next one, so what
each update bought is a paired figure. Every stage is timed.

The state after each finished period (rows, the deployed models' files, the error streams) is
written to ``<cache_dir>/cycles/<config hash>`` (``cycle/state.py``); ``cycle.resume=true``
continues from there. The settings are ``cycle/config.py``'s.
"""

from __future__ import annotations

import copy
import dataclasses
import shutil
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from omegaconf import DictConfig, OmegaConf

from mlbench.analysis.requirements import check_data, check_one, describe
from mlbench.backends import Runner, runner_for
from mlbench.compress import Artifact, Facts, Pass, PassContext
from mlbench.compress.recipe import build_recipe
from mlbench.cycle.config import Cycle
from mlbench.cycle.policies import Signals
from mlbench.cycle.state import (
    STATE_VERSION,
    Deployed,
    PolicyState,
    restore_state,
    save_state,
    view,
)
from mlbench.cycle.stream import Stream
from mlbench.data import DataBundle
from mlbench.datacheck import Check, CheckContext
from mlbench.datacheck.stage import feature_source, run_checks
from mlbench.datacheck.stage import select as select_checks
from mlbench.errors import MlbenchError, environment_error, first_line
from mlbench.evaluate.efficiency import latency
from mlbench.evaluate.loop import evaluate
from mlbench.evaluate.stats import paired_deltas
from mlbench.models import count_params
from mlbench.monitor.detectors import ATC, build_detectors, streaming_detectors
from mlbench.monitor.protocol import fit_detectors
from mlbench.progress import console
from mlbench.train import content_hash, fit, save_weights
from mlbench.train.baseline import fit_kwargs

STAGES = ("score", "monitor", "datacheck", "train", "compress", "evaluate", "gate")
UPDATE_STAGES = ("datacheck", "train", "compress", "evaluate", "gate")


def _shortfall(check: dict) -> str:
    """Why a gate requirement failed, in a few words: the gain it showed, or the value it had."""
    if isinstance(check.get("gain"), float):
        return f" (gain {check['gain']:+.3g})"
    if isinstance(check.get("value"), float):
        return f" (value {check['value']:.4g})"
    return f" ({check['reason']})" if check.get("reason") else ""


# --------------------------------------------------------------------------- the engine

class Engine:
    """Runs the cycle of one config: the stream, the policies' deployments, their updates."""

    def __init__(self, cyc: Cycle, cfg: DictConfig, data: DataBundle, data_hash: str, stream: Stream,
                 model_factory: Callable[..., torch.nn.Module], baseline: torch.nn.Module, device: torch.device,
                 checks: list[Check], recipe: list[Pass], batch_size: int):
        self.cyc, self.cfg, self.data, self.device, self.recipe = cyc, cfg, data, device, recipe
        self.model_factory, self.baseline, self.checks = model_factory, baseline, checks
        self.batch_size, self.stream = batch_size, stream
        self.retired: list[Path] = []  # folders of replaced models, deleted after the next save
        self.metric_reqs = [r for r in cyc.requirements if r.get("data") is None]
        self.data_reqs = [r for r in cyc.requirements if r.get("data") is not None]
        config = OmegaConf.to_container(cfg, resolve=True)
        config["cycle"].pop("resume", None)
        config.pop("paths", None)
        self.key = content_hash({"config": config, "data": data_hash, "state": STATE_VERSION})
        self.state_dir = Path(cfg.paths.cache_dir) / "cycles" / self.key

    # ------------------------------------------------------------------ pieces
    def fit_kwargs(self, device: torch.device) -> dict[str, Any]:
        """The run's training settings with the cycle's batch size (windows are small: more steps)."""
        return {**fit_kwargs(self.cfg, device), "batch_size": self.cyc.batch_size}

    def _seed(self, *parts: int) -> int:
        return int(np.random.SeedSequence([self.cyc.seed, *parts]).generate_state(1)[0] % (2**31))

    def bundle(self, train_periods: list[int], gate_periods: list[int], seed: int,
               labelled: dict[int, list[int]] | None = None) -> DataBundle:
        replay = self.cyc.replay if self.cyc.train_data == "replay" else 0.0
        return self.stream.bundle(train_periods, gate_periods, self.data.meta, replay, seed, labelled)

    def compress(self, dense: torch.nn.Module, bundle: DataBundle, workdir: Path, seed: int,
                 device: torch.device) -> Artifact:
        """The deployment recipe applied to a trained model (no recipe: the model itself)."""
        art = Artifact(id=content_hash({"weights": [float(p.detach().double().sum()) for p in dense.parameters()]}),
                       format="torch", model=dense, facts=Facts(*count_params(dense)))
        art, _ = build_recipe(art, self.recipe, workdir, lambda step: PassContext(
            data=bundle, device=device, workdir=workdir, seed=seed, fit_kwargs=self.fit_kwargs(device), step=step),
            save_source=True)
        return art

    def serve(self, art: Artifact, device: torch.device) -> Runner:
        return runner_for(art, self.cfg.backend, device)

    def figures(self, art: Artifact, runner: Runner, x: torch.Tensor) -> dict[str, float]:
        lat = latency(runner, x, warmup=5, min_calls=self.cyc.latency_calls, min_time_s=0.0)
        return {"size_bytes": float(sum(f.stat().st_size for f in art.files)),
                "latency_p50_ms": lat["latency_p50_ms"], "latency_p99_ms": lat["latency_p99_ms"],
                "params": float(art.facts.params or 0)}

    def watch(self, dep: Deployed, x: torch.Tensor, y: torch.Tensor) -> Deployed:
        """Fit the deployed model's monitor: detectors and ATC on its outputs for held-out
        labelled items."""
        probs = evaluate(dep.runner, x, y, batch_size=self.batch_size).probs
        dep.reference = view(probs, x)
        skipped: list[dict] = []
        dep.detectors = fit_detectors(build_detectors(self.cyc.detectors, "cycle.detectors", self.cyc.alpha, self.cyc.seed),
                                      dep.reference, self.data.meta.modality, skipped)
        if skipped:
            raise MlbenchError("cycle.detectors: " + "; ".join(f"{s['detector']}: {s['reason']}" for s in skipped))
        dep.atc = ATC().fit(dep.reference.probs, y.numpy())
        return dep

    def check_window(self, bundle: DataBundle, dense: torch.nn.Module, device: torch.device) -> dict | None:
        """The data-check stage's checks on the update's training data against the gate's items."""
        if not self.checks:
            return None
        # the checks compare the splits: train (the training data) against test (the gate's items) only
        bundle = dataclasses.replace(bundle, **{k: {**getattr(bundle, k), "val": getattr(bundle, k)["val"][:0],
                                                    "calib": getattr(bundle, k)["calib"][:0]}
                                                for k in ("x", "y", "index")})
        checks, skipped = select_checks([copy.copy(c) for c in self.checks], bundle)
        features, space = feature_source(bundle, dense, device)
        with tempfile.TemporaryDirectory() as tmp:
            ctx = CheckContext(bundle, features, space, self.cyc.seed, device, Path(tmp), self.cyc.accuracy_target)
            section = run_checks(checks, ctx, skipped, Path(tmp))
        return {"counts": section["counts"], "figures": section["figures"],
                "findings": [f"{f['severity']} {f['check']}: {f['message']}" for f in section["findings"]
                             if f["severity"] != "info"]}

    def candidate(self, source: torch.nn.Module, train_periods: list[int], gate_periods: list[int], seed: int,
                  workdir: Path, device: torch.device, current: Deployed,
                  labelled: dict[int, list[int]] | None = None) -> tuple[dict, Deployed | None]:
        """One update: data checks, training, the recipe, evaluation and the gate. Returns its
        record and the model to deploy (None when the gate refuses or a step fails)."""
        rec: dict[str, Any] = {"train_periods": train_periods, "gate_periods": gate_periods, "seconds": {}}
        sec, clock = rec["seconds"], time.perf_counter
        bundle = self.bundle(train_periods, gate_periods, seed, labelled)
        rec["n_train"], rec["n_holdout"] = len(bundle.y["train"]), len(bundle.y["test"])
        rec["n_replayed"] = rec["n_train"] - len(self.stream.part(train_periods, False, labelled)[1])
        step = "datacheck"
        try:
            t0 = clock()
            dc = self.check_window(bundle, current.dense, device)
            rec["datacheck"] = dc
            sec["datacheck"] = clock() - t0
            step, t0 = "train", clock()
            if self.cyc.warm_start:
                model = copy.deepcopy(source)
            else:
                torch.manual_seed(seed)
                model = self.model_factory(input_shape=self.data.meta.input_shape,
                                           num_classes=self.data.meta.num_classes)
            res = fit(model, bundle.x["train"], bundle.y["train"], bundle.x["val"], bundle.y["val"],
                      epochs=self.cyc.epochs, seed=seed, desc="retrain", **self.fit_kwargs(device))
            model = model.cpu().eval()
            rec["train"] = {"best_epoch": res.best_epoch, "best_val_loss": res.best_val_loss}
            sec["train"] = clock() - t0
            step, t0 = "compress", clock()
            art = self.compress(model, bundle, workdir, seed, device)
            save_weights(model, workdir / "dense.safetensors")
            sec["compress"] = clock() - t0
            step, t0 = "evaluate", clock()
            runner = self.serve(art, device)
            x_ho, y_ho = bundle.x["test"], bundle.y["test"]
            cand = evaluate(runner, x_ho, y_ho, batch_size=self.batch_size)
            if cand.problem:
                raise MlbenchError(f"the candidate's outputs are not probabilities ({cand.problem})")
            cur = evaluate(current.runner, x_ho, y_ho, batch_size=self.batch_size)
            figs = self.figures(art, runner, x_ho)
            sec["evaluate"] = clock() - t0
            step, t0 = "gate", clock()
            deltas = paired_deltas(cur.probs, cand.probs, y_ho, n_resamples=1000, seed=seed,
                                   metrics=("accuracy", "ece", "nll", "brier"))
            variant = {"status": "ok", "metrics": {**cand.metrics, **figs}, "deltas": deltas}
            deployed_now = {"status": "ok", "metrics": {**cur.metrics, **current.figures}}
            checks = [{**check_one(r, variant, deployed_now, False, self.cyc.use_bound),
                       "requirement": describe(r, "the deployed model")} for r in self.metric_reqs]
            checks += [check_data(r, dc) for r in self.data_reqs]
            sec["gate"] = clock() - t0
        except Exception as e:  # noqa: BLE001 - a failed update keeps the deployed model
            shutil.rmtree(workdir, ignore_errors=True)
            env = environment_error(e)
            if env is not None:  # a full disk or read-only folder fails the cycle, not the update
                raise OSError(env.errno, env.strerror, env.filename or str(workdir)) from None
            rec.update(status="failed", reason=f"{step}: {first_line(e)}")
            return rec, None
        rec["candidate"] = {k: variant["metrics"].get(k) for k in ("accuracy", "ece", "nll", *figs)}
        rec["deployed_now"] = {k: cur.metrics.get(k) for k in ("accuracy", "ece", "nll")}
        rec["delta_accuracy"] = deltas["accuracy"]
        rec["checks"] = [{k: c.get(k) for k in ("requirement", "passed", "value", "gain", "margin", "reason")}
                         for c in checks]
        failed = [c for c in checks if not c["passed"]]
        if failed:
            shutil.rmtree(workdir, ignore_errors=True)
            rec.update(status="refused", reason="; ".join(c["requirement"] + _shortfall(c) for c in failed))
            return rec, None
        rec.update(status="deployed", reason=None)
        dep = Deployed(current.version + 1, None, train_periods, gate_periods, model, art, runner, workdir, figures=figs)
        return rec, self.watch(dep, x_ho, y_ho)

    # ------------------------------------------------------------------ the initial deployment
    def initial(self) -> Deployed:
        """The baseline through the recipe (calibration and parity on its validation split, so no
        stream item is touched), watched on its validation split."""
        d = self.data
        bundle = DataBundle(meta=d.meta, x={"train": d.x["train"], "val": d.x["val"], "calib": d.x["val"],
                                            "test": d.x["val"]},
                            y={"train": d.y["train"], "val": d.y["val"], "calib": d.y["val"], "test": d.y["val"]},
                            index={"train": d.index["train"], "val": d.index["val"], "calib": d.index["val"],
                                   "test": d.index["val"]})
        folder = self.state_dir / "initial"
        if folder.exists():
            shutil.rmtree(folder)
        try:
            art = self.compress(self.baseline, bundle, folder, self.cyc.seed, self.device)
        except Exception as e:  # noqa: BLE001 - reported in one line
            if environment_error(e) is not None:
                raise
            raise MlbenchError(f"cycle: the recipe {self.cyc.recipe} fails on the initial model ({first_line(e)})") from None
        save_weights(self.baseline, folder / "dense.safetensors")
        runner = self.serve(art, self.device)
        dep = Deployed(0, None, [], [], self.baseline, art, runner, folder, figures=self.figures(art, runner, d.x["val"]))
        return self.watch(dep, d.x["val"], d.y["val"])

    # ------------------------------------------------------------------ one period
    def labelled_window(self, ps: PolicyState, t: int) -> tuple[list[int], list[int]]:
        """The labelled periods an update at the end of period ``t`` trains on (their training
        part) and the periods whose held-out part the gate judges on. The oracle sees every
        label at once, with no delay, and trains on all of them."""
        last = t if ps.policy.oracle else t - self.cyc.label_delay
        cumulative = ps.policy.oracle or self.cyc.train_data == "cumulative"
        train = list(range(0 if cumulative else max(0, last - self.cyc.window + 1), last + 1))
        return train, list(range(max(0, last - self.cyc.gate_periods + 1), last + 1))

    def score(self, ps: PolicyState, t: int) -> dict:
        clock = time.perf_counter
        x, y = self.stream.items(t)
        p = self.stream.periods[t]
        dep = ps.deployed
        t0 = clock()
        probs = evaluate(dep.runner, x, y, batch_size=self.batch_size).probs
        pred = probs.argmax(1)
        row: dict[str, Any] = {"period": t, "scenario": p.scenario.label, "kind": p.scenario.kind, "n": len(y),
                               "accuracy": float((pred == y).float().mean()), "version": dep.version,
                               "correct": (pred == y).int().tolist(), "seconds": {"score": clock() - t0}}
        ps.labelled[t] = self.cyc.labels.pick(ps.strategy, ps.policy.oracle, probs.numpy(), x.flatten(1).numpy(),
                                              p.gate, self.cyc.gate_holdout, self._seed(t, 7)).tolist()
        row["labels"] = len(ps.labelled[t])  # labels of this period that arrive (label_delay later)
        if ps.previous is not None:  # the model the last deployment replaced, on the same items
            prev = evaluate(ps.previous.runner, x, y, batch_size=self.batch_size).probs.argmax(1)
            row["previous"] = {"version": ps.previous.version, "correct": (prev == y).int().tolist()}
        t0 = clock()
        w = view(probs, x)
        results = {n: d.test(w) for n, d in dep.detectors.items()}
        row["p_values"] = {n: float(r["p_value"]) for n, r in results.items()}
        row["alarm"] = [n for n, r in results.items() if r["drift"]]
        row["estimate"] = float(dep.atc.estimate(w.probs))
        ps.preds[t] = pred.tolist()
        row["error_alarm"] = self.feed_errors(ps, t)
        row["seconds"]["monitor"] = clock() - t0
        return row

    def feed_errors(self, ps: PolicyState, t: int) -> bool:
        """The labels of period t − delay arrive: the deployed version's errors on it (when it
        scored that period) go to the streaming detector."""
        if self.cyc.error_detector is None:
            return False
        arrived = t if ps.policy.oracle else t - self.cyc.label_delay
        if arrived < 0 or arrived not in ps.preds:
            return False
        pred = ps.preds.pop(arrived)
        scored_by = next((r["version"] for r in ps.rows if r["period"] == arrived), ps.deployed.version)
        if scored_by != ps.deployed.version:  # a model since replaced: its errors say nothing of this one
            return False
        lab = np.asarray(ps.labelled.get(arrived, []), dtype=np.int64)  # only the labels that arrive
        errs = (np.asarray(pred)[lab] != self.stream.periods[arrived].labels.numpy()[lab]).astype(int).tolist()
        fired = False
        for e in errs:
            ps.errors.append(e)
            ps.stream_detector.update(e)
            fired = fired or bool(ps.stream_detector.drift_detected)
        return fired

    def new_stream_detector(self):
        return None if self.cyc.error_detector is None else streaming_detectors(self.cyc.seed)[self.cyc.error_detector]

    def step(self, ps: PolicyState, t: int) -> dict:
        row = self.score(ps, t)
        sig = Signals(t, row["alarm"], row["error_alarm"], row["estimate"])
        why = ps.policy.decide(sig) if t < self.cyc.periods - 1 else None  # nothing left to serve
        row["decision"], row["update"] = why, None
        if why is None:
            ps.rows.append(row)
            return row
        train, gate = self.labelled_window(ps, t)
        if not train or not len(self.stream.part(train, False, ps.labelled)[1]) \
                or not len(self.stream.part(gate, True, ps.labelled)[1]):
            row["update"] = {"status": "skipped", "reason": "no labelled period so far" if not train else
                             "no labelled item to train on or to gate with yet"}
            ps.rows.append(row)
            return row
        workdir = self.state_dir / ps.name / f"v{ps.deployed.version + 1}"
        if workdir.exists():
            shutil.rmtree(workdir)
        source = ps.deployed.dense
        rec, new = self.candidate(source, train, gate, self._seed(t), workdir, self.device, ps.deployed, ps.labelled)
        row["update"] = rec
        row["seconds"].update(rec["seconds"])
        if new is not None:
            new.trained_at = t
            old = ps.previous
            ps.previous, ps.deployed, ps.errors = ps.deployed, new, []
            ps.stream_detector = self.new_stream_detector()
            if old is not None and old.version > 0:  # deleted once this period's state is saved: a kill
                self.retired.append(old.folder)  # before that resumes from a state that still names it
        ps.rows.append(row)
        return row

    # ------------------------------------------------------------------ the whole stream
    def run(self) -> dict[str, Any]:
        """The whole stream (call inside :meth:`locked`)."""
        initial = self.initial()
        restored = restore_state(self, initial) if self.cyc.resume else None
        resumed_from = None
        if restored is None:
            if self.cyc.resume:
                console.print("[yellow]cycle.resume: no saved state for this configuration; starting afresh[/]")
            for p in self.state_dir.iterdir():
                if p.name not in ("initial",):
                    shutil.rmtree(p, ignore_errors=True) if p.is_dir() else p.unlink()
            states = {name: PolicyState(p, initial, stream_detector=self.new_stream_detector(), name=name,
                                        strategy=strategy) for name, p, strategy in self.cyc.tracks}
            start = 0
        else:
            states, done = restored
            start = resumed_from = done + 1
            console.print(f"[bold]cycle[/] resumed after period {done} from {self.state_dir}")
        for t in range(start, self.cyc.periods):
            rows = {name: self.step(ps, t) for name, ps in states.items()}
            save_state(self, states, t)
            for folder in self.retired:
                shutil.rmtree(folder, ignore_errors=True)
            self.retired.clear()
            console.print(f"  period {t:>2} [dim]{self.stream.periods[t].scenario.label:<28}[/] "
                          + " · ".join(type(states[n].policy).console_cell(n, r) for n, r in rows.items()))
        return {"states": states, "initial": initial, "resumed_from": resumed_from}

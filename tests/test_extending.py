"""Every seam costs a class and a YAML: a package written here, outside mlbench, adds a
stressor, a data check, a shift detector, a shift scenario, an update policy and an artifact
format (with its runner and the pass that produces it), configured by YAML in a ``--config-dir`` this test
creates. Nothing under ``mlbench/`` is edited; each component shows up in summary.json,
report.md, report.html and the console of a ``debug=smoke`` run."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import pytest
from conftest import run_cli

PLUGIN = '''
"""A plugin: one class per seam."""
from __future__ import annotations

import numpy as np
import torch
from scipy import stats

from mlbench.backends import TorchRunner
from mlbench.compress import Artifact, Pass
from mlbench.compress.formats import Format
from mlbench.cycle import Policy
from mlbench.datacheck import Check, CheckResult, Finding
from mlbench.monitor import Detector, Scenario
from mlbench.stress.base import InputStressor


class ScaleInputs(InputStressor):
    """Inputs multiplied by a factor (a sensor gain drift)."""

    kind = "gain"
    condition_key = "factors"

    def __init__(self, factors=(0.5, 2.0), when_unfit="error", seed=0):
        super().__init__(when_unfit, seed)
        self.factors = [float(f) for f in factors]

    def conditions(self):
        return self.factors

    def perturb(self, x, y, condition, model=None, dtype=torch.float32):
        return x * condition


class SmallestClass(Check):
    """The smallest class of the train split, warned about below ``minimum`` items."""

    def __init__(self, minimum=10, when_unfit="skip"):
        super().__init__(when_unfit)
        self.minimum = minimum

    def run(self, ctx):
        counts = np.bincount(ctx.data.y["train"].numpy())
        k = int(counts.argmin())
        sev = "warn" if counts[k] < self.minimum else "info"
        return CheckResult(findings=[Finding("smallest_class", sev, f"smallest train class {k}: {counts[k]} items")],
                           figures={"smallest_class_items": float(counts[k])},
                           section={"counts": counts.tolist()})

    @classmethod
    def report(cls, doc, name, section):
        doc.h3(f"Train items per class ({name})")
        doc.table(["class", "items"], [[str(i), str(c)] for i, c in enumerate(section["counts"])])


class ConfidenceMean(Detector):
    """Welch's t-test on the mean maximum softmax probability."""

    needs = "probs"
    presets = {"confidence_mean": {}}

    def test(self, window):
        r = stats.ttest_ind(self.ref.probs.max(1), window.probs.max(1), equal_var=False)
        p = 1.0 if np.isnan(r.pvalue) else float(r.pvalue)
        return {"statistic": float(np.nan_to_num(r.statistic)), "p_value": p, "drift": p < self.alpha}


class OnlyOneClass(Scenario):
    """Label shift to the extreme: every item of the window from one class."""

    kind = "only_one_class"

    def priors(self, classes, rng):
        q = np.zeros(classes)
        q[self.classes[0]] = 1.0
        return q


class EveryOther(Policy):
    """Retrain at the end of every second period."""

    name = "every_other"

    def decide(self, s):
        return "every other period" if s.t % 2 == 1 else None


class TorchScriptRunner(TorchRunner):
    """The loaded script module on the CPU."""

    def __init__(self, path):
        super().__init__(torch.jit.load(str(path), map_location="cpu"), torch.device("cpu"))
        self.path = path

    def with_threads(self, threads):
        return self

    def describe(self):
        return {**super().describe(), "backend": "torchscript", "file": self.path.name}


class TorchScriptFormat(Format):
    """A TorchScript file, run by its own runner."""

    name, backend = "torchscript", "torchscript"

    def runner(self, art, device, threads, options):
        return TorchScriptRunner(art.path)


class TorchScriptExport(Pass):
    """Trace the torch model on a test batch and save it as TorchScript."""

    name = "torchscript_export"
    produces = "torchscript"

    def apply(self, art, ctx):
        model = art.model.cpu().eval()
        x = ctx.data.x["test"][:2].cpu()
        path = ctx.workdir / "model.ts"
        with torch.no_grad():
            torch.jit.save(torch.jit.trace(model, x), str(path))
        return Artifact(id="", format="torchscript", path=path, files=[path]), {"file": path.name}

    def params(self):
        return {}
'''

CONFIG = {
    "stress/gain.yaml": """
        gain:
          _target_: myplug.ScaleInputs
          factors: [0.5, 2.0]
          seed: ${seed}
        """,
    "stress/with_gain.yaml": """
        defaults:
          - light
          - gain
          - _self_
        """,
    "datacheck/smallest_class.yaml": """
        smallest_class:
          _target_: myplug.SmallestClass
          minimum: 1000
        """,
    "datacheck/with_smallest.yaml": """
        defaults:
          - light
          - smallest_class
          - _self_
        """,
    "monitor/with_mean.yaml": """
        defaults:
          - light
          - _self_
        detectors: [bbsd_soft, confidence, {_target_: myplug.ConfidenceMean, name: confidence_mean}]
        scenarios: [{kind: none}, {_target_: myplug.OnlyOneClass, classes: [3, 0]}]
        """,
    "cycle/with_other.yaml": """
        defaults:
          - default
          - _self_
        policies: [never, {_target_: myplug.EveryOther}]
        schedule: [{from: 0, kind: none}, {from: 2, kind: covariate, corruption: auto, param: 3}]
        detectors: [bbsd_soft, confidence_mean]   # a preset of the plugin (plugins=[myplug] imports it)
        """,
    "variants/torchscript.yaml": """
        torchscript:
          description: TorchScript (traced) on the torch runner
          passes:
            - _target_: myplug.TorchScriptExport
        """,
}


@pytest.fixture(scope="module")
def plugin(tmp_path_factory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("plugin")
    (root / "myplug").mkdir()
    (root / "myplug" / "__init__.py").write_text(PLUGIN)
    for rel, text in CONFIG.items():
        f = root / "conf" / rel
        f.parent.mkdir(parents=True, exist_ok=True)
        f.write_text(textwrap.dedent(text).lstrip())
    return root, root / "conf"


def _run(args: list[str], root: Path, cwd: Path) -> tuple[dict, str, Path]:
    out = run_cli(*args, cwd=cwd, env={"PYTHONPATH": str(root)})
    assert out.returncode == 0, out.stderr[-3000:]
    run_dir = Path(next(line.split("run directory: ", 1)[1].strip() for line in out.stdout.splitlines()
                        if line.startswith("run directory: ")))
    return json.loads((run_dir / "summary.json").read_text()), out.stdout, run_dir


def test_a_stressor_check_detector_and_format_from_outside_the_package(plugin, tmp_path):
    root, conf = plugin
    s, console, run_dir = _run(["--config-dir", str(conf), "debug=smoke", "variants=[onnx_fp32,torchscript]",
                                "stress=with_gain", "datacheck=with_smallest", "monitor=with_mean"], root, tmp_path)
    md, html = (run_dir / "report.md").read_text(), (run_dir / "report.html").read_text()
    # the artifact format: a variant run by its own runner, with its own file
    ts = s["variants"]["torchscript"]
    assert ts["status"] == "ok" and ts["backend"] == "torchscript", ts.get("error")
    assert ts["metrics"]["size_bytes"] == (run_dir / "models" / "torchscript" / "model.ts").stat().st_size
    # traced from the baseline: the same predictions, so the same accuracy
    assert ts["metrics"]["accuracy"] == s["variants"]["baseline"]["metrics"]["accuracy"]
    assert "torchscript" in console and "| torchscript | torchscript |" in md
    # the stressor: its section, flat metrics, generic report table and console line
    gain = ts["stress"]["gain"]
    assert gain["target"] == "myplug.ScaleInputs" and set(gain["factors"]) == {"0.5", "2"}
    assert "stress/gain/2/accuracy" in ts["metrics"]
    assert "### gain (gain)" in md and "stress gain " in console
    # the data check: its finding, figure, section and own report table
    dc = s["datacheck"]
    assert dc["checks"]["smallest_class"]["target"] == "myplug.SmallestClass"
    assert dc["figures"]["smallest_class_items"] == min(dc["checks"]["smallest_class"]["counts"])
    assert any(f["check"] == "smallest_class" and f["severity"] == "warn" for f in dc["findings"])
    assert "### Train items per class (smallest_class)" in md and "smallest_class" in console
    # the detector: measured like the built-in ones, in the monitoring tables and line
    mon = s["monitor"]
    assert "confidence_mean" in mon["detectors"]
    assert {r["detector"] for r in mon["power"]} >= {"confidence_mean", "bbsd_soft"}
    assert "confidence_mean" in mon["deployment"]["variants"]["torchscript"]["false_alarms"]  # an output detector
    assert "| confidence_mean |" in md and "confidence_mean" in console
    # its own words, rendered by its class (Detector.report_line): what it reads and how it did
    assert "**confidence_mean** (reads probs): Welch's t-test on the mean maximum softmax probability. — at n =" in md
    # the scenario: drawn like the built-in ones; a window of one class is caught by BBSDh-like tests
    assert mon["scenarios"] == ["none", "only_one_class"]
    caught = {r["detector"]: r["rate"] for r in mon["power"] if r["scenario"] == "only_one_class" and r["window"] == 100}
    assert caught["bbsd_soft"] > 0.9 and "| only_one_class | bbsd_soft |" in md
    for text in ("Train items per class", "confidence_mean", "gain (gain)", "torchscript"):
        assert text in html


def test_an_update_policy_from_outside_the_package(plugin, tmp_path):
    root, conf = plugin
    s, console, run_dir = _run(["cycle", "--config-dir", str(conf), "debug=smoke", "cycle=with_other", "plugins=[myplug]",
                                "cycle.periods=4", "cycle.period_size=40", "cycle.recipe=null", "cycle.scaling=[]"],
                               root, tmp_path)
    c = s["cycle"]
    assert c["policies"] == ["never", "every_other"] and c["detectors"] == ["bbsd_soft", "confidence_mean"]
    decisions = [r["decision"] for r in c["timeline"]["every_other"]]
    assert decisions[1] == "every other period" and decisions[0] is None
    md = (run_dir / "report.md").read_text()
    assert "every_other" in console and "| every_other |" in md
    assert "**every_other**: Retrain at the end of every second period. — mean accuracy" in md


def test_a_plugin_that_cannot_be_imported_is_one_line(tmp_path):
    out = run_cli("debug=smoke", "plugins=[no_such_plugin]", cwd=tmp_path)
    assert out.returncode == 2 and out.stderr.strip().splitlines() == [
        "error: plugins: cannot import 'no_such_plugin' (ModuleNotFoundError: No module named 'no_such_plugin')"]
    assert not (tmp_path / "cache").exists()  # nothing trained


def test_an_unknown_format_is_one_line(tmp_path):
    from mlbench.compress import Artifact
    from mlbench.errors import MlbenchError
    with pytest.raises(MlbenchError, match=r"no artifact format 'tflite' is registered \(known: onnx, torch"):
        Artifact(id="x", format="tflite").kind

"""The seams between stages: the metric table, the import graph, the registries of
passes and stressors, and the artifact contract."""

from __future__ import annotations

import ast
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from conftest import ROOT
from sklearn.metrics import accuracy_score, f1_score, log_loss, recall_score

from mlbench.evaluate import registry
from mlbench.evaluate.stats import DELTA_METRICS, _metrics_from_sums, pair_columns
from mlbench.schema import CONF_DIR

# ----------------------------------------------------------------------- import graph


def _module_graph(root: Path) -> dict[str, set[str]]:
    mods = {}
    for p in root.rglob("*.py"):
        parts = list(p.relative_to(root.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        mods[".".join(parts)] = p
    graph = {}
    for name, path in mods.items():
        edges = set()
        for node in ast.walk(ast.parse(path.read_text())):  # imports inside functions count too
            if isinstance(node, ast.Import):
                edges |= {a.name for a in node.names if a.name in mods}
            elif isinstance(node, ast.ImportFrom) and node.module in mods:
                for a in node.names:
                    sub = f"{node.module}.{a.name}"
                    edges.add(sub if sub in mods else node.module)
        graph[name] = edges - {name}
    return graph


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index, low, stack, on, out, counter = {}, {}, [], set(), [], [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in graph.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in graph:
        if v not in index:
            visit(v)
    return out


def test_the_import_graph_has_no_cycle():
    graph = _module_graph(ROOT / "mlbench")
    assert len(graph) > 40 and "mlbench.pipeline" in graph["mlbench.cli"] | {"mlbench.pipeline"}
    assert _cycles(graph) == []


def test_the_cycle_finder_finds_a_planted_cycle():
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_layers_point_one_way():
    """Configuration and stages below analysis never import analysis/ (it reads their output)."""
    graph = _module_graph(ROOT / "mlbench")
    for mod, edges in graph.items():
        if mod.startswith(("mlbench.stress", "mlbench.evaluate", "mlbench.compress", "mlbench.train",
                           "mlbench.schema", "mlbench.backends", "mlbench.data")):
            assert not [e for e in edges if e.startswith("mlbench.analysis")], mod
    assert not [e for e in graph["mlbench.schema"]
                if e not in ("mlbench.evaluate.registry", "mlbench.errors", "mlbench.choices")]
    assert graph["mlbench.choices"] <= {"mlbench.errors"} and not graph["mlbench.text"]  # leaves: anything may use them


# ----------------------------------------------------------------------- metric table

def _probs(n=400, c=4, seed=0):
    g = torch.Generator().manual_seed(seed)
    logits = torch.randn(n, c, generator=g, dtype=torch.float64) * 2
    labels = torch.randint(0, c, (n,), generator=g)
    logits[torch.arange(n), labels] += 1.0  # better than chance
    probs = logits.softmax(1)
    probs[:3] = torch.nn.functional.one_hot(labels[:3], c).double()  # saturated rows: confidence 1.0
    return probs, labels


def _binned(conf, hit, bins=15):
    b = np.minimum((conf * bins).astype(int), bins - 1)  # [k/B, (k+1)/B), 1.0 in the last bin
    return [(conf[b == k], hit[b == k]) for k in range(bins)]


def _ref_ece(p, y):
    conf, hit = p.max(1), (p.argmax(1) == y).astype(float)
    return sum(abs(c.sum() - h.sum()) for c, h in _binned(conf, hit)) / len(y)


def _ref_mce(p, y):
    conf, hit = p.max(1), (p.argmax(1) == y).astype(float)
    return max(abs(c.mean() - h.mean()) for c, h in _binned(conf, hit) if len(c))


def _ref_ece_adaptive(p, y):
    conf, hit = p.max(1), (p.argmax(1) == y).astype(float)
    order = np.argsort(conf, kind="stable")
    return sum(len(ch) * abs(hit[ch].mean() - conf[ch].mean()) for ch in np.array_split(order, 15)) / len(y)


def _ref_classwise(p, y):
    out = []
    for k in range(p.shape[1]):
        out.append(sum(abs(c.sum() - h.sum()) for c, h in _binned(p[:, k], (y == k).astype(float))) / len(y))
    return float(np.mean(out))


# an independent computation for every metric computed from predictions
REFERENCES = {
    "accuracy": lambda p, y: accuracy_score(y, p.argmax(1)),
    "f1_macro": lambda p, y: f1_score(y, p.argmax(1), average="macro"),
    "nll": lambda p, y: log_loss(y, np.clip(p, 1e-12, 1), labels=list(range(p.shape[1]))),
    "brier": lambda p, y: float(((p - np.eye(p.shape[1])[y]) ** 2).sum(1).mean()),
    "ece": _ref_ece,
    "ece_adaptive": _ref_ece_adaptive,
    "mce": _ref_mce,
    "classwise_ece": _ref_classwise,
    "worst_class_recall": lambda p, y: recall_score(y, p.argmax(1), average=None).min(),
}


def test_every_prediction_metric_matches_an_independent_computation():
    probs, labels = _probs()
    p, y = probs.numpy(), labels.numpy()
    table = registry.names(source=registry.PREDICTIONS)
    assert set(table) == set(REFERENCES), "a metric computed from predictions needs a reference here"
    for name in table:
        got = registry.METRICS[name].function(probs, labels)
        assert got == pytest.approx(REFERENCES[name](p, y), abs=1e-6), name  # torchmetrics: float32


def test_the_bootstrap_computes_every_metric_the_table_marks():
    probs, labels = _probs()
    assert set(DELTA_METRICS) == set(registry.names(source=registry.PREDICTIONS, bootstrap=True))
    cols, layout = pair_columns(probs, probs, labels)
    w, c = layout["width"], layout["classes"]
    sums = cols.double().sum(0, keepdim=True)
    support = sums[:, 2 * w + 1:2 * w + 1 + c]
    from_sums = _metrics_from_sums(sums[:, :w], len(labels), c, layout["bins"], support)
    assert set(from_sums) >= set(DELTA_METRICS)
    for name in DELTA_METRICS:  # the statistic from per-item sums equals the metric itself
        assert float(from_sums[name][0]) == pytest.approx(REFERENCES[name](probs.numpy(), labels.numpy()),
                                                          abs=1e-5), name


def test_the_config_vocabulary_is_the_table():
    assert [m.value for m in registry.Metric] == list(registry.METRICS)
    for spec in registry.METRICS.values():
        assert spec.source in (registry.PREDICTIONS, registry.TRAIN, registry.GROUPS, registry.COMPARISON,
                               registry.EFFICIENCY, registry.MODEL, registry.STRESS, registry.MONITOR,
                               registry.FACTORS, registry.SELECT), spec.name
        assert (spec.fn is not None) == (spec.source == registry.PREDICTIONS), spec.name


def test_measured_metrics_match_independent_computations(smoke_run):
    """The metrics a stage measures, checked against what the run folder holds."""
    from safetensors.torch import load_file

    from mlbench.results import read_predictions
    run_dir, s, _ = smoke_run
    v = s["variants"]
    base = read_predictions(run_dir / "predictions/baseline.npz")
    checked = set()
    for name, var in v.items():
        if var["status"] != "ok":
            continue
        m = var["metrics"]
        files = [run_dir / var["artifact"]]
        files += [f for f in files[0].parent.glob(files[0].name + ".data")]
        assert m["size_bytes"] == sum(f.stat().st_size for f in files), name
        pred = read_predictions(run_dir / var["predictions"])
        assert m["disagreement"] == pytest.approx(float((pred["probs"].argmax(1) != base["probs"].argmax(1)).mean()))
        assert m["generalization_gap"] == pytest.approx(m["train_accuracy"] - m["accuracy"])
        assert 0 < m["latency_p50_ms"] <= m["latency_p90_ms"] <= m["latency_p99_ms"]
        assert m["throughput_sps"] == var["throughput_sps_by_batch"][str(m["throughput_batch_size"])]
        assert m["load_s"] > 0 and m["peak_mem_bytes"] > 0
        if var["artifact"].endswith(".safetensors"):
            w = {k: t for k, t in load_file(run_dir / var["artifact"]).items()
                 if t.is_floating_point() and not k.endswith(("running_mean", "running_var"))}  # parameters only
            assert m["params"] == sum(t.numel() for t in w.values() if t.is_floating_point()), name
            assert m["nonzero_params"] == sum(int((t != 0).sum()) for t in w.values() if t.is_floating_point())
        rows = [r for sec in var["stress"].values() if sec["kind"] == "corruption"
                for c, r in sec["severities"].items() if c != "0"]
        assert m["mean_corruption_accuracy"] == pytest.approx(np.mean([r["accuracy"] for r in rows]))
        ces = [sec["corruption_error"] for sec in var["stress"].values() if sec["kind"] == "corruption"]
        assert m["mean_corruption_error"] == pytest.approx(np.mean(ces))
        sec = var["stress"]["fgsm"]["eps"]
        eps = next(iter(sec))
        assert m[registry.metric_key("stress_accuracy", "fgsm", eps)] == sec[eps]["accuracy"]
        fa = s["monitor"]["deployment"]["variants"][name]["false_alarms"]
        assert m["monitor_false_alarm_rate"] == max(x["rate"] for x in fa.values())
        checked |= {"monitor_false_alarm_rate", "size_bytes", "disagreement", "generalization_gap", "train_accuracy", "latency_p50_ms",
                    "latency_p90_ms", "latency_p99_ms", "latency_mean_ms", "throughput_sps", "load_s",
                    "peak_mem_bytes", "params", "nonzero_params", "mean_corruption_accuracy",
                    "mean_corruption_error", "stress_accuracy"}
    # group metrics: worked examples in tests/test_stats.py (group_metrics); listed here so that
    # a new metric without a check fails this test
    checked |= {"worst_group_accuracy", "demographic_parity_difference", "equalized_odds_difference"}
    checked |= {"min_factor_accuracy"}  # recomputed from the predictions in tests/test_coverage.py
    checked |= {"flops", "val_accuracy", "train_val_gap"}  # mlbench select's: tests/test_select.py
    measured = set(registry.METRICS) - set(registry.names(source=registry.PREDICTIONS))
    assert measured <= checked, f"no check for {sorted(measured - checked)}"


# ----------------------------------------------------------------------- registries

def _options(group: str) -> list[str]:
    return sorted(p.stem for p in (CONF_DIR / group).glob("*.yaml"))


STRESS_PRESETS = {"light", "full", "none"}


@pytest.mark.parametrize("data, modality", [("digits", "image"), ("wine", "tabular")])
def test_every_stress_option_runs_under_smoke(run_stages, data, modality):
    """Each stressor YAML on its own (not only through a preset), on image and tabular data:
    every option whose class declares the modality runs on the baseline (in this process)."""
    from hydra.utils import get_class
    fits = {}
    for n in _options("stress"):
        if n in STRESS_PRESETS:
            continue
        cls = get_class(yaml.safe_load((CONF_DIR / "stress" / f"{n}.yaml").read_text())[n]["_target_"])
        if modality in cls.modalities:
            fits[n] = cls
    _, s = run_stages(f"data={data}", f"stress=[{','.join(fits)}]", "variants=[]", "eval.efficiency=false",
                      "deployment.invariance_items=0", "datacheck=none", "monitor=none", "train.epochs=2",
                      "stress.pgd.steps=2", "stress.pgd_l2.steps=2", "stress.explanations.n_items=8",
                      "stress.bitflip.trials=1", "stress.weight_noise.trials=1", "analysis.history=false")
    assert len(fits) >= 8
    for n, cls in fits.items():
        sec = s["variants"]["baseline"]["stress"][n]
        assert sec[cls.condition_key], n  # the baseline is stressed under every stressor


def test_every_stage_has_its_words():
    """The report's time table and the console name every stage a run or `mlbench monitor` runs."""
    from mlbench import pipeline
    from mlbench.records import STAGE_LABELS, STAGE_NOTES
    names = [s.__name__ for s in [*pipeline.STAGES, *pipeline.MONITOR_STAGES, pipeline.write]]
    assert set(names) <= set(STAGE_LABELS) and set(STAGE_NOTES) <= set(names)


REFERENCE_TESTS = {"stress": ("test_stress.py", "test_attacks.py"), "datacheck": ("test_datacheck.py", "test_coverage.py")}


@pytest.mark.parametrize("group", sorted(REFERENCE_TESTS))
def test_every_stressor_and_check_under_conf_has_its_own_test(group):
    """Each stressor and data check class configured under conf/ is named (by class or option)
    in the tests of its kind, which check it against planted truth or an independent
    implementation: one added without such a test fails here. Detectors: tests/test_monitor.py."""
    import re

    import yaml
    from hydra.utils import get_class

    from mlbench.schema import CONF_DIR
    text = "".join((ROOT / "tests" / f).read_text() for f in REFERENCE_TESTS[group])
    named = {}
    for path in (CONF_DIR / group).glob("*.yaml"):
        for option, node in (yaml.safe_load(path.read_text()) or {}).items():
            if isinstance(node, dict) and "_target_" in node:
                named.setdefault(get_class(node["_target_"]).__name__, set()).add(option)
    untested = [c for c, opts in named.items()
                if not any(re.search(rf"\b{re.escape(n)}\b", text) for n in {c, *opts})]
    assert named and not untested, untested


def test_every_subcommand_is_dispatched_and_described():
    from mlbench.cli import HYDRA_COMMANDS, PLAIN_COMMANDS
    from mlbench.preflight import SUBCOMMANDS
    assert {n for n, _ in SUBCOMMANDS} == {"(none)", *PLAIN_COMMANDS, *HYDRA_COMMANDS}

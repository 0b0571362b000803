"""The variants stage: each recipe built from the baseline and measured."""

from __future__ import annotations

import logging
import time

from mlbench.backends import runner_for
from mlbench.components import BASELINE, VariantSpec
from mlbench.compress import Artifact, PassContext
from mlbench.compress.formats import format_of
from mlbench.compress.recipe import build_recipe
from mlbench.deploy import onnx_metadata
from mlbench.errors import MlbenchError, NotApplicable, environment_error, first_line
from mlbench.evaluate.measure import measure
from mlbench.pipeline.context import RunContext
from mlbench.progress import console
from mlbench.records import Live, VariantRecord
from mlbench.results import write_json
from mlbench.train.baseline import fit_kwargs

log = logging.getLogger(__name__)

# --------------------------------------------------------------------------- variants

def build(ctx: RunContext, spec: VariantSpec) -> tuple[Artifact, dict[str, list[str]]]:
    """The variant's recipe applied to the baseline (``compress.recipe.build_recipe``: lineage
    reuse within the run, the artifact cache across runs), in ``models/<variant>/``."""
    def context(step: int) -> PassContext:
        return PassContext(data=ctx.data, device=ctx.device, workdir=ctx.run_dir / "models" / spec.name,
                           seed=ctx.cfg.seed, fit_kwargs=fit_kwargs(ctx.cfg, ctx.device), step=step)
    return build_recipe(ctx.baseline, spec.passes, ctx.run_dir / "models" / spec.name, context,
                        built=ctx.built, cache=ctx.artifacts)


def measure_variant(ctx: RunContext, rec: VariantRecord, art: Artifact, overrides: dict | None = None) -> None:
    t0 = time.perf_counter()
    runner = runner_for(art, ctx.cfg.backend, ctx.device, overrides)
    load_s = time.perf_counter() - t0
    rec.runner = runner.describe()
    rec.backend = rec.runner["backend"]
    rec.flags += art.flags
    evaluation, fitted = measure(rec, art, runner, ctx.data, ctx.settings, ctx.calibrator_factory, ctx.baseline_calibrator)
    rec.metrics["load_s"] = load_s
    if rec.name == BASELINE:
        ctx.baseline_calibrator = fitted
    ctx.live[rec.name] = Live(art, runner, evaluation)


def variants(ctx: RunContext) -> None:
    base = VariantRecord(BASELINE, "trained model, torch fp32", [],
                         artifact_path=f"models/{BASELINE}/model.safetensors",
                         lineage={"id": ctx.baseline.id, "parent": None, "passes": []})
    measure_variant(ctx, base, ctx.baseline)
    ctx.records[BASELINE] = base
    console.print(f"  [green]✓[/] {BASELINE}: accuracy {base.metrics['accuracy']:.4f}")
    for spec in ctx.specs:
        rec = VariantRecord(spec.name, spec.description, [p.name for p in spec.passes])
        t0 = time.perf_counter()
        try:
            art, skipped = build(ctx, spec)
            if spec.passes and all((r.get("info") or {}).get("skipped") for r in art.records):
                raise NotApplicable(f"every pass of the recipe leaves the baseline as it is "
                                    f"({art.records[-1]['info']['skipped']})")
            rec.lineage = {"id": art.id, "parent": art.parent, "passes": art.records, **skipped}
            rec.build_s = time.perf_counter() - t0
            rec.artifact_path = str(art.files[0].relative_to(ctx.run_dir))
            measure_variant(ctx, rec, art, spec.runner)
            drop = base.metrics["accuracy"] - rec.metrics["accuracy"]
            if drop > ctx.cfg.eval.accuracy_drop_flag:
                rec.flags.append(f"accuracy drops by {100 * drop:.1f} points against the baseline")
            shown = [f for f in rec.flags if not f.startswith("calibrator")]  # those are in the report
            console.print(f"  [green]✓[/] {spec.name}: accuracy {rec.metrics['accuracy']:.4f}"
                          + (f" [yellow]({'; '.join(shown)})[/]" if shown else ""))
        except NotApplicable as e:  # e.g. a torch pass on an ONNX-only model: not a failure
            rec.status, rec.metrics, rec.error = "not_applicable", {}, first_line(e)
            rec.backend = ctx.baseline.kind.backend
            console.print(f"  [dim]– {spec.name}: not applicable ({rec.error})[/]")
        except Exception as e:  # one broken variant must not lose the others
            if environment_error(e) is not None:  # a full disk is the run's failure, not the variant's
                raise
            rec.status, rec.metrics = "failed", {}
            rec.backend = format_of(spec.passes[-1].produces).backend if spec.passes else ctx.baseline.kind.backend
            first = str(e).strip().splitlines()[0] if str(e).strip() else ""
            rec.error = first if isinstance(e, MlbenchError) else f"{type(e).__name__}: {first}"
            log.debug("variant %s failed", spec.name, exc_info=True)
            console.print(f"  [red]✗[/] {spec.name}: {rec.error}")
        ctx.records[spec.name] = rec
    for name, lv in ctx.live.items():
        if lv.artifact.kind.exportable:
            rec = ctx.records[name]
            write_json(lv.artifact.path.with_suffix(".json"), onnx_metadata(
                lv.artifact, ctx.data.meta, ctx.baseline.id, rec.calibrator["refit"] if rec.calibrator else None,
                ctx.cfg))


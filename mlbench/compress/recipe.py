"""Applying a recipe: the one builder the run, the export command and the update cycle use.

A recipe is a list of passes applied in order to a source artifact. Each artifact's lineage id
(``hash(parent id, pass, parameters)``) is known before anything runs, so the builder starts
after the deepest artifact already at hand: built earlier with the same lineage (``built``:
onnx_fp32, ort_int8_static and ort_int8_dynamic export once per run), or kept by an earlier run
in the artifact cache (formats that are ``cacheable``). The result's files are written by its
format into ``workdir``.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from mlbench.compress.base import Artifact, Pass, PassContext, lineage_id
from mlbench.compress.cache import ArtifactCache
from mlbench.compress.formats import format_of


def build_recipe(source: Artifact, passes: list[Pass], workdir: Path, context: Callable[[int], PassContext],
                 built: dict[str, Artifact] | None = None, cache: ArtifactCache | None = None,
                 save_source: bool = False) -> tuple[Artifact, dict[str, list[str]]]:
    """The artifact ``passes`` make from ``source`` (``context(step)``: each pass's context).
    ``built`` (lineage id → artifact) is read and extended; ``cache`` is read and filled.
    Returns the artifact and the passes not run: ``{"reused": [...]}`` (in ``built``) or
    ``{"cached": [...]}`` (an earlier run). The source itself is saved only with ``save_source``
    (an empty recipe deploys the source)."""
    workdir.mkdir(parents=True, exist_ok=True)
    built = {} if built is None else built
    ids, parent = [], source.id
    for p in passes:  # lineage ids are known before anything is built
        parent = lineage_id(parent, p.name, p.params())
        ids.append(parent)
    art, start, skipped = source, 0, {}
    for k in range(len(passes) - 1, -1, -1):  # the deepest artifact at hand
        done = built.get(ids[k])
        if done is not None:
            art, start, skipped = done.kind.localize(done, workdir), k + 1, {"reused": [p.name for p in passes[:k + 1]]}
            break
        hit = cache.get(ids[k], workdir) if cache is not None and format_of(passes[k].produces).cacheable else None
        if hit is not None:
            art, start, skipped = hit, k + 1, {"cached": [p.name for p in passes[:k + 1]]}
            built[hit.id] = hit
            break
    for step in range(start, len(passes)):
        art = passes[step](art, context(step))
        built[art.id] = art
        if cache is not None and art.kind.cacheable:
            cache.put(art)
    if art is not source or save_source:
        art.files = art.kind.save(art, workdir)
    return art, skipped

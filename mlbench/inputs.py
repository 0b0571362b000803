"""summary.json ``inputs``: what the run evaluated — the model (source, file, sha256, how it was
loaded, class names, preprocessing) and the data (source, manifest, class-to-index map,
encodings, splits) — so a figure can be traced to the exact files behind it."""

from __future__ import annotations

from typing import Any

from omegaconf import DictConfig, OmegaConf

from mlbench.data import DataBundle, Dataset
from mlbench.models.sources import check_class_names


def model_inputs(factory: Any, model_cfg: DictConfig, start: str,
                 data_class_names: list[str]) -> tuple[dict[str, Any], list[str]]:
    """The model source's own record (``model=torch`` ...), or the built-in model's target, checked
    against the data's class names; and the warnings it calls for (a file that was unpickled)."""
    record = dict(getattr(factory, "record", None) or {})
    if not record:
        record = {"source": "builtin", "arch": model_cfg.get("_target_"), "weights": None,
                  "arguments": {k: v for k, v in OmegaConf.to_container(model_cfg, resolve=True).items()
                                if not k.startswith("_")}}
    record["train_start"] = start
    check_class_names(record, data_class_names)
    warnings = []
    if record.get("weights_only") is False:  # model.trust_pickle=true, and it was needed
        warnings.append(f"model.weights {record['weights']} was unpickled (model.trust_pickle=true): loading it "
                        "could run code; re-save its state_dict() as safetensors")
    return record, warnings


def data_inputs(dataset: Dataset, bundle: DataBundle, data_cfg: DictConfig, content_hash: str) -> dict[str, Any]:
    """The data source's own record (files, manifest hash, vocabularies, fixed splits) plus what
    every source has: class-to-index map, input spec, normalization, preprocessing."""
    meta = bundle.meta
    return {"source": data_cfg.get("_target_"), "name": meta.name, "modality": meta.modality,
            "input_shape": list(meta.input_shape),
            "class_to_index": {str(n): i for i, n in enumerate(meta.class_names)},
            "feature_names": meta.feature_names, "normalization": meta.normalization,
            "preprocessing": meta.preprocessing, "content_hash": content_hash,
            "split_sizes": bundle.sizes(), "split_indices": "splits.npz", **dataset.record}

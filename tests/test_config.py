"""Every option of every config group composes; schemas catch typos and wrong types."""

from __future__ import annotations

import inspect

import pytest
import yaml
from hydra.errors import ConfigCompositionException
from hydra.utils import get_class, instantiate
from omegaconf.errors import ConfigKeyError, ValidationError

from mlbench.schema import CONF_DIR

# every config group under conf/ (variants: below, each recipe's passes built too; hydra: Hydra's own)
GROUPS = sorted(p.name for p in CONF_DIR.iterdir() if p.is_dir() and p.name not in ("variants", "hydra"))


def options(group: str) -> list[str]:
    return sorted(p.stem for p in (CONF_DIR / group).glob("*.yaml"))


@pytest.mark.parametrize("group,option", [(g, o) for g in GROUPS for o in options(g)])
def test_every_option_composes(make_cfg, group, option):
    assert {"data", "model", "stress", "datacheck", "monitor", "cycle", "tracking"} <= set(GROUPS)
    overrides = [f"{group}={option}"]
    if option == "npz":
        overrides.append("data.path=x.npz")
    cfg = make_cfg(*overrides)
    assert cfg.seed == 0


@pytest.mark.parametrize("option", options("variants"))
def test_every_variant_composes_and_its_passes_instantiate(make_cfg, option):
    cfg = make_cfg(f"variants=[{option}]")
    spec = cfg.variants[option]
    assert spec.passes, "a variant needs at least one pass"
    for node in spec.passes:
        cls = get_class(node._target_)
        params = set(inspect.signature(cls).parameters)
        assert set(node) - {"_target_"} <= params, f"{option}: keys not in {cls.__name__}"
        instantiate(node)


def test_yaml_keys_match_target_signatures():
    for group in ("data", "model", "calibrate"):
        for path in (CONF_DIR / group).glob("*.yaml"):
            node = yaml.safe_load(path.read_text()) or {}
            if "_target_" not in node:
                node = node.get(group) or {}  # a config in the _global_ package nests under its group
            if "_target_" not in node:
                continue
            params = set(inspect.signature(get_class(node["_target_"])).parameters)
            keys = set(node) - {"_target_", "_partial_", "defaults"}
            assert keys <= params, f"{path.name}: {keys - params}"


def test_misspelt_key_fails_at_compose(make_cfg):
    with pytest.raises((ConfigCompositionException, ConfigKeyError)):
        make_cfg("data.vall=0.1")


def test_wrong_type_fails_at_compose(make_cfg):
    with pytest.raises((ConfigCompositionException, ValidationError)):
        make_cfg("train.epochs=abc")
    with pytest.raises((ConfigCompositionException, ValidationError)):
        make_cfg("model.depth=deep", "model=resnet")


def test_unknown_option_fails(make_cfg):
    with pytest.raises(ConfigCompositionException):
        make_cfg("data=nope")


def test_default_variants(make_cfg):
    cfg = make_cfg(smoke=False)
    assert list(cfg.variants) == ["onnx_fp32", "ort_int8_static", "ort_int8_dynamic", "prune50_ft",
                                  "structured50_ft"]
    assert cfg.data._target_ == "mlbench.data.Digits" and cfg.model._target_ == "mlbench.models.CNN"


def test_tabular_data_defaults_to_the_mlp(make_cfg):
    for data in ("breast_cancer", "wine", "synthetic"):
        assert make_cfg(f"data={data}").model._target_ == "mlbench.models.MLP"
        assert make_cfg(f"data={data}", "model=cnn").model._target_ == "mlbench.models.CNN"
    assert make_cfg("data=digits").model._target_ == "mlbench.models.CNN"
    cfg = make_cfg("data=synthetic", "data.n=500")
    assert cfg.data.n == 500 and cfg.data._target_ == "mlbench.data.Synthetic"


def test_experiment_overrides_groups(make_cfg):
    cfg = make_cfg("experiment=tabular")
    assert cfg.data._target_ == "mlbench.data.BreastCancer"
    assert "torch_int8_dynamic" in cfg.variants


def test_cluster_launcher_composes():
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        cfg = compose("config", overrides=["hydra/launcher=cluster"], return_hydra_config=True)
    assert cfg.hydra.launcher.gpus_per_node == 1 and "submitit" in cfg.hydra.launcher._target_.lower()


def test_run_dir_override(tmp_path):
    from conftest import run_cli
    out = run_cli("debug=smoke", "data=wine", "model=mlp", "variants=[]", "stress=none", "eval.efficiency=false",
                  "monitor=none", "datacheck=none", f"hydra.run.dir={tmp_path}/my_run", cwd=tmp_path)
    assert out.returncode == 0, out.stdout + out.stderr
    assert (tmp_path / "my_run" / "summary.json").is_file()

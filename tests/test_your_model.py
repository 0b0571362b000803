"""Your model, your data: a user's own PyTorch module and weights (safetensors, a state-dict
checkpoint, a torch.export program), images in class folders and rows in CSV/Parquet files.

Each artifact is built here, offline, the way a user would have it; each run's baseline
predictions are checked item for item against an evaluation written independently in the test
(Pillow + plain torch, pandas + plain torch)."""

from __future__ import annotations

import json
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import run_in_process
from PIL import Image
from safetensors.torch import save_file
from sklearn.datasets import load_breast_cancer, load_digits

FAST = ("variants=[]", "stress=none", "monitor=none", "datacheck=none", "eval.efficiency=false")
NET = textwrap.dedent('''
    import torch
    from torch import nn

    class Net(nn.Module):
        """A user's classifier: its own layer names, its own constructor."""
        def __init__(self, in_features: int = 64, num_classes: int = 10, hidden: int = 48):
            super().__init__()
            self.body = nn.Sequential(nn.Flatten(), nn.Linear(in_features, hidden), nn.ReLU())
            self.classifier = nn.Linear(hidden, num_classes)

        def forward(self, x):
            return self.classifier(self.body(x))
''')


def _train(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, epochs: int = 60) -> torch.nn.Module:
    torch.manual_seed(0)
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    for _ in range(epochs):
        opt.zero_grad()
        torch.nn.functional.cross_entropy(model(x), y).backward()
        opt.step()
    return model.eval()


@pytest.fixture(scope="module")
def user(tmp_path_factory):
    """What a user brings: digits as PNG files in class folders, the same images as an .npz, a
    module in a loose script, its weights in three formats and a pickled whole module; breast
    cancer rows as CSV and Parquet and a model trained on its raw columns."""
    root = tmp_path_factory.mktemp("user")
    d = load_digits()
    names = [f"digit_{k}" for k in range(10)]
    images, labels = [], []
    for i, (img, y) in enumerate(zip(d.images, d.target)):
        folder = root / "images" / names[y]
        folder.mkdir(parents=True, exist_ok=True)
        pixels = (img * 255 / 16).round().astype(np.uint8)
        Image.fromarray(pixels, "L").save(folder / f"{i:04d}.png")
    # the order ImageFolder gives: classes sorted, then file names sorted (read back independently)
    files = sorted((root / "images").glob("*/*.png"), key=lambda p: (p.parent.name, p.name))
    for p in files:
        images.append(np.asarray(Image.open(p).convert("L"), dtype=np.float32)[None] / 255.0)
        labels.append(names.index(p.parent.name))
    x, y = np.stack(images), np.array(labels)
    np.savez(root / "images.npz", x=x, y=y)
    (root / "net.py").write_text(NET)
    import importlib.util
    spec = importlib.util.spec_from_file_location("user_net", root / "net.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    sys.modules["user_net"] = mod  # so that a whole pickled module can be written
    torch.manual_seed(0)
    net = _train(mod.Net(), torch.from_numpy(x), torch.from_numpy(y))
    state = net.state_dict()
    save_file(state, str(root / "net.safetensors"), metadata={"class_names": json.dumps(names)})
    torch.save({"epoch": 3, "state_dict": {f"module.{k}": v for k, v in state.items()}}, root / "net.pt")
    program = torch.export.export(net, (torch.zeros(2, 1, 8, 8),), dynamic_shapes=({0: torch.export.Dim("batch")},))
    torch.export.save(program, str(root / "net.pt2"))
    torch.save(net, root / "whole.pt")

    bc = load_breast_cancer(as_frame=True)
    df = bc.frame.rename(columns=lambda c: c.replace(" ", "_"))
    df["target"] = np.where(df["target"] == 1, "benign", "malignant")
    rng = np.random.default_rng(0)
    df["site"] = rng.choice(["north", "south"], len(df))
    df["patient"] = [f"p{i}" for i in range(len(df))]
    df["day"] = np.arange(len(df))
    df.to_csv(root / "rows.csv", index=False)
    df.to_parquet(root / "rows.parquet")
    feats = [c for c in df.columns if c not in ("target", "site", "patient", "day")]
    raw = torch.tensor(df[feats].to_numpy(), dtype=torch.float32)
    yt = torch.tensor((df["target"] == "malignant").to_numpy().astype(np.int64))
    mean, std = raw.mean(0), raw.std(0)
    tab = _train(torch.nn.Sequential(torch.nn.Linear(len(feats), 2)), (raw - mean) / std, yt, epochs=200)
    save_file(tab[0].state_dict(), str(root / "tab.safetensors"))  # the Linear's own keys
    return {"root": root, "net": net, "x": x, "y": y, "names": names, "df": df, "feats": feats,
            "tab": tab, "tab_mean": mean.tolist(), "tab_std": std.tolist()}


def _run(tmp_path, *overrides, fast=True):
    ctx, summary = run_in_process(*(FAST if fast else ()), *overrides, run_dir=tmp_path / "run",
                                  cache=tmp_path / "cache")
    preds = np.load(tmp_path / "run" / "predictions" / "baseline.npz")
    return ctx, summary, preds


def _torch_model(user, weights: str, *more: str) -> list[str]:
    r = user["root"]
    return ["model=torch", f"model.script={r / 'net.py'}", "model.arch=Net", f"model.weights={r / weights}",
            "train=none", *more]


@pytest.mark.parametrize("weights", ["net.safetensors", "net.pt", "net.pt2"])
def test_a_users_module_on_image_folders_matches_plain_torch_item_for_item(user, tmp_path, weights):
    r = user["root"]
    more = ["model.arch=null"] if weights.endswith(".pt2") else []
    ctx, s, preds = _run(tmp_path, "data=image_folder", f"data.root={r / 'images'}", "data.mode=L",
                         *_torch_model(user, weights, *more))
    # independent: the test's own decoded images through the test's own trained module
    with torch.no_grad():
        mine = user["net"](torch.from_numpy(user["x"][preds["index"]])).argmax(1).numpy()
    assert (preds["probs"].argmax(1) == mine).all()
    assert (preds["labels"] == user["y"][preds["index"]]).all()
    assert s["variants"]["baseline"]["metrics"]["accuracy"] == pytest.approx((mine == preds["labels"]).mean())
    assert s["variants"]["baseline"]["metrics"]["accuracy"] > 0.9  # the weights were loaded, not re-initialized
    model = s["inputs"]["model"]
    assert model["source"] == "torch" and model["train_start"] == "none"
    assert model["sha256"] and len(model["sha256"]) == 64
    if weights == "net.pt":
        assert (model["key"], model["prefix_stripped"], model["weights_only"]) == ("state_dict", "module.", True)
    if weights == "net.safetensors":
        assert model["class_names_from"] == "weights metadata"
    data = s["inputs"]["data"]
    assert data["class_to_index"] == {n: i for i, n in enumerate(user["names"])}
    assert data["preprocessing"]["mode"] == "L" and data["files"] == len(user["y"])
    assert s["baseline_training"]["trained"] is False


def test_a_trusted_pickle_loads_and_the_run_says_it_was_unpickled(user, tmp_path):
    r = user["root"]
    _, s, preds = _run(tmp_path, "data=image_folder", f"data.root={r / 'images'}", "data.mode=L",
                       *_torch_model(user, "whole.pt", "model.arch=null", "model.trust_pickle=true"))
    with torch.no_grad():
        mine = user["net"](torch.from_numpy(user["x"][preds["index"]])).argmax(1).numpy()
    assert (preds["probs"].argmax(1) == mine).all()
    assert (s["inputs"]["model"]["format"], s["inputs"]["model"]["weights_only"]) == ("pickle", False)
    assert any("was unpickled" in w for w in s["warnings"])


def test_image_folder_and_the_equivalent_npz_give_identical_predictions(user, tmp_path):
    r = user["root"]
    _, _, a = _run(tmp_path / "a", "data=image_folder", f"data.root={r / 'images'}", "data.mode=L",
                   *_torch_model(user, "net.safetensors", "model.class_names=null"))
    _, _, b = _run(tmp_path / "b", "data=npz", f"data.path={r / 'images.npz'}", "data.modality=image",
                   *_torch_model(user, "net.safetensors"))
    assert (a["index"] == b["index"]).all()
    np.testing.assert_array_equal(a["probs"], b["probs"])


def test_the_second_image_folder_run_reads_no_image(user, tmp_path, monkeypatch):
    from mlbench.data import ImageFolder
    root = user["root"] / "images"
    first = ImageFolder(str(root), mode="L", cache_dir=str(tmp_path))
    a = first.load()
    assert first.record["cache_hit"] is False
    monkeypatch.setattr("mlbench.data.image_folder._decode", lambda *a: pytest.fail("decoded an image"))
    second = ImageFolder(str(root), mode="L", cache_dir=str(tmp_path))
    b = second.load()
    assert second.record["cache_hit"] is True
    assert all(torch.equal(a.x[s], b.x[s]) for s in a.x)


def test_fixed_split_folders_and_a_corrupt_file_skipped(user, tmp_path):
    from mlbench.data import ImageFolder
    src = user["root"] / "images"
    for i, p in enumerate(sorted(src.glob("*/*.png"))[:600]):
        split = "test" if i % 3 == 0 else "train"
        dst = tmp_path / "fixed" / split / p.parent.name / p.name
        dst.parent.mkdir(parents=True, exist_ok=True)
        dst.write_bytes(p.read_bytes())
    bad = tmp_path / "fixed" / "train" / "digit_0" / "zz_truncated.png"
    bad.write_bytes(next(src.glob("digit_0/*.png")).read_bytes()[:40])
    ds = ImageFolder(str(tmp_path / "fixed"), mode="L", on_bad_file="skip")
    b = ds.load()
    assert b.sizes()["test"] == 200  # the folder's test split, kept whole
    assert sum(b.sizes().values()) == 600  # the truncated file left out
    assert ds.record["bad_files"][0].startswith("train/digit_0/zz_truncated.png")
    assert b.extras["source_findings"][0][2] == 1


def test_a_table_with_a_users_model_on_raw_columns_matches_plain_torch(user, tmp_path):
    r = user["root"]
    feats = user["feats"]
    for path in ("rows.csv", "rows.parquet"):
        _, s, preds = _run(
            tmp_path / path, "data=table", f"data.path={r / path}", "data.preprocess=none",
            f"data.features=[{','.join(feats)}]", "model=torch", "train=none",
            f"model.arch={{_target_:torch.nn.Linear,in_features:{len(feats)},out_features:2}}",
            f"model.weights={r / 'tab.safetensors'}", f"model.mean={user['tab_mean']}", f"model.std={user['tab_std']}")
        df = user["df"]
        raw = torch.tensor(df[feats].to_numpy()[preds["index"]], dtype=torch.float32)
        with torch.no_grad():
            mine = user["tab"]((raw - torch.tensor(user["tab_mean"])) / torch.tensor(user["tab_std"])).argmax(1)
        assert (preds["probs"].argmax(1) == mine.numpy()).all(), path
        assert s["inputs"]["data"]["class_to_index"] == {"benign": 0, "malignant": 1}
        assert s["inputs"]["data"]["normalization"] == {}  # preprocess=none: the columns as given


# ------------------------------------------------------------------ bad inputs: one line each

class _RunsCode:
    """A pickle that would run a command when loaded."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        import os
        return (os.system, (f"touch {self.marker}",))


def _bad_files(user, d: Path) -> dict[str, str]:
    """Files a user might hand over by mistake, each wrong in one way."""
    import pandas as pd
    r, f = user["root"], {}
    state = user["net"].state_dict()
    extra = {**{k: v for k, v in state.items() if k != "classifier.bias"}, "head.extra": torch.zeros(3)}
    save_file(extra, str(d / "keys.safetensors"))
    f["keys"] = str(d / "keys.safetensors")
    f["truncated"] = str(d / "trunc.safetensors")
    Path(f["truncated"]).write_bytes((r / "net.safetensors").read_bytes()[:300])
    f["marker"] = str(d / "pwned")
    torch.save({"state_dict": _RunsCode(Path(f["marker"]))}, d / "evil.pt")
    f["evil"] = str(d / "evil.pt")
    save_file(state, str(d / "named.safetensors"), metadata={"class_names": json.dumps(user["names"][::-1])})
    f["renamed"] = str(d / "named.safetensors")
    (d / "factory.py").write_text("def make(num_classes=10):\n    return {'not': 'a module'}\n")
    f["factory"] = str(d / "factory.py")
    (d / "my_metrics.py").write_text(METRIC)
    f["metrics"] = str(d / "my_metrics.py")

    def folder(name: str, files: dict[str, bytes | tuple[int, int]]) -> str:
        for rel, content in files.items():
            p = d / name / rel
            p.parent.mkdir(parents=True, exist_ok=True)
            if isinstance(content, tuple):
                Image.fromarray(np.zeros(content, np.uint8), "L").save(p)
            else:
                p.write_bytes(content)
        return str(d / name)
    png = (8, 8)
    f["mixed"] = folder("mixed", {"a/1.png": png, "a/2.png": (9, 9), "b/1.png": png, "b/2.png": png})
    f["corrupt"] = folder("corrupt", {"a/1.png": png, "a/2.png": b"\x89PNG not really", "b/1.png": png})
    f["empty_class"] = folder("empty_class", {"a/1.png": png, "b/1.png": png})
    (d / "empty_class" / "c").mkdir()
    f["one_class"] = folder("one_class", {"a/1.png": png, "a/2.png": png})
    f["no_train"] = folder("no_train", {"test/a/1.png": png, "test/b/1.png": png})
    df = user["df"].copy()
    df.drop(columns=["target"]).to_csv(d / "no_target.csv", index=False)
    f["no_target"] = str(d / "no_target.csv")
    t = df.copy().astype({"mean_radius": object})
    t.loc[7, "mean_radius"] = "twelve"
    t.to_csv(d / "text.csv", index=False)
    f["text"] = str(d / "text.csv")
    def table(name: str, edit, suffix: str = "csv") -> None:
        t = df.copy()
        edit(t)
        path = d / f"{name}.{suffix}"
        t.to_parquet(path) if suffix == "parquet" else t.to_csv(path, index=False)
        f[name] = str(path)
    table("all_nan", lambda t: t.insert(0, "empty", np.nan))
    table("unseen", lambda t: t.insert(0, "split", np.where(t["target"] == "malignant", "test", "train")))
    table("bad_split", lambda t: t.insert(0, "split", "holdout"))
    table("no_label", lambda t: t.__setitem__("target", t["target"].where(t.index != 3, None)))
    table("one_label", lambda t: t.__setitem__("target", "benign"))
    table("dates", lambda t: t.insert(0, "when", pd.date_range("2024-01-01", periods=len(t), freq="D")), "parquet")
    (d / "broken.parquet").write_bytes(b"PAR1" + b"\0" * 64)
    from onnx import TensorProto, helper, save
    for name, dtype, inputs in (("onnx_two", TensorProto.FLOAT, ["a", "b"]), ("onnx_int", TensorProto.INT64, ["a"])):
        ins = [helper.make_tensor_value_info(i, dtype, [None, 64]) for i in inputs]
        node = helper.make_node("Add", inputs * (2 // len(inputs)), ["out"])
        graph = helper.make_graph([node], name, ins, [helper.make_tensor_value_info("out", dtype, [None, 64])])
        save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(d / f"{name}.onnx"))
        f[name] = str(d / f"{name}.onnx")
    f["broken_parquet"] = str(d / "broken.parquet")
    f["unl_size"] = folder("unl_size", {"inbox/1.png": (9, 9)})
    np.savez(d / "unl_nan.npz", x=np.full((5, 1, 8, 8), np.nan, np.float32))
    np.savez(d / "unl_nox.npz", images=np.zeros((5, 1, 8, 8), np.float32))
    df.drop(columns=["target", "mean_radius"]).to_csv(d / "unl_cols.csv", index=False)
    f.update(unl_nan=str(d / "unl_nan.npz"), unl_nox=str(d / "unl_nox.npz"), unl_cols=str(d / "unl_cols.csv"))
    return f


def _bad_cases(user, f: dict[str, str]) -> list[tuple[str, list[str], str]]:
    """(id, command line, what the error line must mention)."""
    r = user["root"]
    img = ["data=image_folder", f"data.root={r / 'images'}", "data.mode=L"]
    net = ["model=torch", f"model.script={r / 'net.py'}", "model.arch=Net"]
    tab = lambda key, *more: ["data=table", f"data.path={f[key]}", "data.id=patient", *more]  # noqa: E731
    return [
        ("head_size", [*img, *net, "model.arch={_target_:Net,num_classes:5}"], "5 outputs but the data has 10"),
        ("keys", [*img, *net, f"model.weights={f['keys']}", "train=none"], "1 missing (classifier.bias)"),
        ("wrong_arch", [*img, "model=torch", "model.arch=mlbench.models.CNN", f"model.weights={r / 'net.safetensors'}",
                        "train=none"], "unexpected"),
        ("pickle_module", [*img, *net, f"model.weights={r / 'whole.pt'}", "train=none"], "model.trust_pickle=true"),
        ("pickle_runs_code", [*img, *net, f"model.weights={f['evil']}", "train=none"], "can run code"),
        ("truncated_safetensors", [*img, *net, f"model.weights={f['truncated']}", "train=none"], "safetensors"),
        ("weights_missing", [*img, *net, "model.weights=/nonexistent/w.safetensors", "train=none"], "does not exist"),
        ("arch_not_importable", [*img, "model=torch", "model.arch=no_such_pkg.Net"], "cannot import"),
        ("arch_not_in_script", [*img, *net, "model.arch=Nett"], "has no attribute 'Nett'"),
        ("factory_not_module", [*img, "model=torch", f"model.script={f['factory']}", "model.arch=make"],
         "not a torch.nn.Module"),
        ("no_arch", [*img, "model=torch", f"model.weights={r / 'net.safetensors'}"], "model.arch"),
        ("class_names_differ", [*img, *net, f"model.weights={f['renamed']}", "train=none"], "class names"),
        ("mean_without_std", [*img, *net, "model.mean=[0.5]"], "model.mean and model.std"),
        ("mean_channels", [*img, *net, f"model.weights={r / 'net.safetensors'}", "train=none", "model.mean=[0.5,0.5]",
                           "model.std=[1,1]"], "model.mean has 2 values"),
        ("none_builtin", ["train=none"], "train=none needs a model that comes with weights"),
        ("finetune_builtin", ["train=finetune"], "train=finetune needs"),
        ("none_seeds", [*img, *net, f"model.weights={r / 'net.safetensors'}", "train=none", "seeds=[1]"], "seeds"),
        ("forward_fails", [*img, *net, "model.arch={_target_:Net,in_features:63}"], "forward pass"),
        ("images_mixed_sizes", ["data=image_folder", f"data.root={f['mixed']}", "data.mode=L"], "data.image_size"),
        ("image_corrupt", ["data=image_folder", f"data.root={f['corrupt']}", "data.mode=L"], "a/2.png"),
        ("image_empty_class", ["data=image_folder", f"data.root={f['empty_class']}"], "holds no image"),
        ("image_one_class", ["data=image_folder", f"data.root={f['one_class']}"], "at least two"),
        ("image_no_train", ["data=image_folder", f"data.root={f['no_train']}"], "no train/"),
        ("image_root_missing", ["data=image_folder", "data.root=/nonexistent/images"], "is not a folder"),
        ("image_mode", ["data=image_folder", f"data.root={r / 'images'}", "data.mode=CMYK"], "data.mode"),
        ("image_size_0", ["data=image_folder", f"data.root={r / 'images'}", "data.image_size=0"], "data.image_size"),
        ("table_missing", tab("no_target"), "data.target: no column 'target'"),
        ("table_path", ["data=table", "data.path=/nonexistent/rows.csv"], "does not exist"),
        ("table_text", tab("text"), "'twelve'"),
        ("table_all_nan", tab("all_nan"), "'empty'"),
        ("table_unseen_labels", tab("unseen", "data.split=split"), "train never shows"),
        ("table_bad_split", tab("bad_split", "data.split=split"), "holdout"),
        ("table_no_label", tab("no_label"), "without a label"),
        ("table_one_label", tab("one_label"), "at least two"),
        ("table_dates", tab("dates"), "dates"),
        ("table_group_missing", tab("no_target", "data.target=site", "data.group=nope"), "data.group"),
        ("table_categorical_unknown", tab("no_label", "data.categorical=[nope]"), "data.categorical"),
        ("table_preprocess", tab("no_label", "data.preprocess=scale"), "data.preprocess"),
        ("parquet_unreadable", tab("broken_parquet"), "cannot be read"),
        ("onnx_two_inputs", [*img, "model=onnx", f"model.path={f['onnx_two']}"], "2 inputs"),
        ("onnx_int_input", [*img, "model=onnx", f"model.path={f['onnx_int']}"], "int64"),
        ("onnx_corrupt", [*img, "model=onnx", f"model.path={f['truncated']}"], "not a valid ONNX model"),
        ("onnx_head_size", ["data=wine", "model=onnx", f"model.path={r / 'clf.onnx'}"], "input"),
        ("onnx_finetune", [*img, "model=onnx", f"model.path={r / 'net.onnx'}", "train=finetune"], "no torch source"),
        ("onnx_cycle", ["cycle", *img, "model=onnx", f"model.path={r / 'net.onnx'}"], "no torch source"),
        ("onnx_output_kind", [*img, "model=onnx", f"model.path={r / 'net.onnx'}", "model.output=probabilities"],
         "not rows of non-negative values"),
        ("patient_id_as_feature", ["data=table", f"data.path={r / 'rows.csv'}"], "an id?"),
        ("metric_raises", [f"metrics.extra=[{f['metrics']}:broken]"], "raised ValueError: this hook is broken"),
        ("metric_not_a_number", [f"metrics.extra=[{f['metrics']}:words]"], "not a number"),
        ("metric_missing", ["metrics.extra=[no_such_pkg.metrics:f]"], "cannot import"),
        ("metric_no_function", [f"metrics.extra=[{f['metrics']}:nope]"], "has no attribute"),
        ("unlabelled_missing", [*img, "data.unlabelled=/nonexistent/inbox"], "is not a folder of images"),
        ("unlabelled_size", [*img, f"data.unlabelled={f['unl_size']}"], "images of 9x9"),
        ("unlabelled_nan", ["data=npz", f"data.path={r / 'images.npz'}", "data.modality=image",
                            f"data.unlabelled={f['unl_nan']}"], "NaN or infinite"),
        ("unlabelled_no_x", ["data=npz", f"data.path={r / 'images.npz'}", "data.modality=image",
                             f"data.unlabelled={f['unl_nox']}"], "no array x"),
        ("unlabelled_columns", ["data=table", f"data.path={r / 'rows.csv'}", "data.id=patient",
                                f"data.unlabelled={f['unl_cols']}"], "lacks feature column(s) ['mean_radius']"),
        ("metric_unknown_in_requirement", ["requirements.checks=[{metric: top9, op: '>=', value: 0.5}]"], "top9"),
    ]


@pytest.fixture(scope="module")
def bad_corpus(user, onnx_user, tmp_path_factory):
    from conftest import run_cli, run_cli_cases, run_dirs
    from test_reliability import FAST as QUICK
    from test_reliability import _tree_digest
    work = tmp_path_factory.mktemp("corpus")
    assert run_cli(*QUICK, cwd=work).returncode == 0  # an earlier run and its cache entry
    (earlier,) = run_dirs(work)
    files = _bad_files(user, tmp_path_factory.mktemp("bad"))
    sub = ("cycle", "monitor", "datacheck")  # a subcommand goes first
    cases = [(cid, [*argv[:1], *QUICK, *argv[1:]] if argv[0] in sub else [*QUICK, *argv], must)
             for cid, argv, must in _bad_cases(user, files)]
    before = _tree_digest(earlier, work / "cache")
    results = run_cli_cases(cases, work, tmp_path_factory.mktemp("logs"))
    after = _tree_digest(earlier, work / "cache")
    # earlier files byte-identical; new files only decoded images (the image cache), no baseline
    new = [p for p in after if p not in before and not p.startswith(str(work / "cache" / "images"))]
    return {"cases": cases, "results": results, "unchanged": {p: after.get(p) for p in before} == before and not new,
            "runs": run_dirs(work) == [earlier], "files": files}


@pytest.mark.reliability
def test_bad_user_inputs_are_one_error_line_and_touch_nothing(bad_corpus):
    assert len(bad_corpus["cases"]) >= 25
    failures = []
    for cid, _, must in bad_corpus["cases"]:
        out = bad_corpus["results"][cid]
        lines = [ln for ln in out.stderr.splitlines() if ln.startswith("error:")]
        if out.returncode != 2 or len(lines) != 1 or "Traceback" in out.stdout + out.stderr \
                or must.lower() not in lines[0].lower():
            failures.append((cid, out.returncode, lines or out.stderr[-600:]))
    assert not failures, "\n".join(map(str, failures))
    assert bad_corpus["unchanged"], "an earlier run or the baseline cache changed"
    assert bad_corpus["runs"], "a failed run left a run directory behind"
    assert not Path(bad_corpus["files"]["marker"]).exists(), "loading the checkpoint ran its code"


def test_table_encoding_equals_scikit_learns_imputer_and_one_hot_encoder():
    """mlbench.data.table.encode against SimpleImputer + OneHotEncoder(handle_unknown="ignore"),
    fitted on the same train rows; unseen categories and missing values planted."""
    import pandas as pd
    from sklearn.compose import ColumnTransformer
    from sklearn.impute import SimpleImputer
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import OneHotEncoder

    from mlbench.data.table import encode
    rng = np.random.default_rng(1)
    n = 400
    df = pd.DataFrame({"a": rng.normal(size=n), "b": rng.integers(0, 5, n).astype(float),
                       "colour": rng.choice(["red", "green", "blue"], n), "size": rng.choice(["s", "m", "l"], n)})
    df.loc[rng.choice(n, 30, replace=False), "a"] = np.nan
    df.loc[rng.choice(n, 20, replace=False), "colour"] = None
    train = np.arange(300)
    df.loc[310:315, "size"] = "xl"  # a category train never shows
    x, names, imputed, vocab, unseen, missing = encode(df, ["a", "b"], ["colour", "size"], train)
    ref = ColumnTransformer([("num", SimpleImputer(strategy="median"), ["a", "b"]),
                             ("cat", make_pipeline(SimpleImputer(strategy="most_frequent"),
                                                   OneHotEncoder(handle_unknown="ignore", sparse_output=False)),
                                    ["colour", "size"])]).fit(df.iloc[train].astype({"colour": object}))
    want = ref.transform(df.astype({"colour": object}))
    np.testing.assert_allclose(x, want, rtol=1e-6)
    assert names == [n.split("__", 1)[1] for n in ref.get_feature_names_out()]
    assert unseen == {"size": 6} and missing == {"a": 30, "colour": 20}
    assert vocab["size"] == ["l", "m", "s"]


# ------------------------------------------------------------------ ONNX-only models

@pytest.fixture(scope="module")
def onnx_user(user):
    """An ONNX export of the user's torch module, and a scikit-learn pipeline converted with
    skl2onnx (ZipMap output) trained on the table's numeric columns."""
    from skl2onnx import to_onnx
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler
    r = user["root"]
    torch.onnx.export(user["net"], (torch.zeros(2, 1, 8, 8),), str(r / "net.onnx"), input_names=["image"],
                      output_names=["logits"], dynamic_axes={"image": {0: "n"}}, dynamo=False)
    df, feats = user["df"], user["feats"]
    clf = make_pipeline(StandardScaler(), LogisticRegression(max_iter=1000)).fit(
        df[feats].to_numpy(np.float32)[::2], df["target"].to_numpy()[::2])
    (r / "clf.onnx").write_bytes(to_onnx(clf, df[feats].to_numpy(np.float32)[:1], target_opset=17).SerializeToString())
    return {"clf": clf}


def test_an_onnx_export_on_image_folders_matches_plain_onnxruntime(user, onnx_user, tmp_path):
    import onnxruntime as ort
    r = user["root"]
    _, s, preds = _run(tmp_path, "data=image_folder", f"data.root={r / 'images'}", "data.mode=L", "model=onnx",
                       f"model.path={r / 'net.onnx'}")
    sess = ort.InferenceSession(str(r / "net.onnx"), providers=["CPUExecutionProvider"])
    mine = sess.run(None, {"image": user["x"][preds["index"]]})[0]
    np.testing.assert_allclose(preds["logits"], mine, rtol=1e-5, atol=1e-5)
    assert (preds["probs"].argmax(1) == mine.argmax(1)).all()
    m = s["inputs"]["model"]
    assert (m["source"], m["output"]["kind"], m["output"]["kind_from"]) == ("onnx", "logits", "values on the data")


@pytest.mark.parametrize("table", ["rows.csv", "rows.parquet"])
def test_a_skl2onnx_pipeline_with_zipmap_matches_scikit_learn_predict(user, onnx_user, tmp_path, table):
    r, feats = user["root"], user["feats"]
    _, s, preds = _run(tmp_path, "data=table", f"data.path={r / table}", "data.preprocess=none",
                       f"data.features=[{','.join(feats)}]", "data.group=site", "data.id=patient", "data.time=day",
                       "model=onnx", f"model.path={r / 'clf.onnx'}", "variants=[onnx_fp32,ort_int8_dynamic,prune50_ft]",
                       "datacheck=light")
    df = user["df"]
    want = onnx_user["clf"].predict(df[feats].to_numpy(np.float32)[preds["index"]])
    names = np.array(s["data"]["class_names"])
    assert (names[preds["probs"].argmax(1)] == want).all()  # item for item, as scikit-learn predicts
    np.testing.assert_allclose(preds["probs"], onnx_user["clf"].predict_proba(
        df[feats].to_numpy(np.float32)[preds["index"]]), atol=1e-5)
    m = s["inputs"]["model"]
    assert m["output"]["zipmap_removed"] and m["output"]["kind"] == "probabilities"
    assert m["class_names"] == ["benign", "malignant"] and m["class_names_from"] == "the graph's ZipMap labels"
    v = s["variants"]
    assert v["onnx_fp32"]["status"] == "not_applicable" and v["prune50_ft"]["status"] == "not_applicable"
    assert "torch source" in v["prune50_ft"]["error"]
    assert v["ort_int8_dynamic"]["status"] == "ok"
    assert s["inputs"]["data"]["split_by"] == "time column day"
    test_days = df["day"].to_numpy()[preds["index"]]
    assert test_days.min() > df["day"].to_numpy()[np.load(tmp_path / "run" / "splits.npz")["train"]].max()


def test_white_box_attacks_are_skipped_on_an_onnx_only_model_and_square_runs(user, onnx_user, tmp_path):
    r = user["root"]
    _, s, _ = _run(tmp_path, "data=image_folder", f"data.root={r / 'images'}", "data.mode=L", "model=onnx",
                   f"model.path={r / 'net.onnx'}", "variants=[ort_int8_dynamic]", "stress=[fgsm,square]",
                   "stress.square.eps=[0,0.1]", "stress.square.max_iter=30", fast=False)
    skipped = {d["stressor"]: d["reason"] for d in s["stress"]["skipped"]}
    assert "fgsm" in skipped and "needs gradients" in skipped["fgsm"]
    sq = s["variants"]["baseline"]["stress"]["square"]["eps"]
    assert sq["0"]["accuracy"] == pytest.approx(s["variants"]["baseline"]["metrics"]["accuracy"])
    assert sq["0.1"]["accuracy"] < sq["0"]["accuracy"] - 0.1  # the attack finds adversarial squares
    # the budget: 30 updates, each up to 3 model evaluations in ART (all items, current, candidate)
    assert 30 <= sq["0.1"]["queries_per_item"] <= 3 * 31 + 1
    assert "square" in s["variants"]["ort_int8_dynamic"]["stress"]


# ------------------------------------------------------------------ the Python API

def test_python_api_takes_a_module_and_arrays_a_dataframe_and_an_onnx_path(user, onnx_user, tmp_path):
    import mlbench
    base = [f"paths.results_dir={tmp_path / 'results'}", f"paths.cache_dir={tmp_path / 'cache'}",
            f"paths.history_db={tmp_path / 'history.sqlite'}", "debug=smoke",
            *FAST]
    idx = np.arange(len(user["y"]))
    s = mlbench.run(base, run_dir=tmp_path / "a", model=user["net"], data=(user["x"], user["y"]))
    preds = np.load(tmp_path / "a" / "predictions" / "baseline.npz")
    with torch.no_grad():
        mine = user["net"](torch.from_numpy(user["x"][idx[preds["index"]]])).argmax(1).numpy()
    assert (preds["probs"].argmax(1) == mine).all()
    assert s.raw["inputs"]["model"]["source"] == "python" and (tmp_path / "a" / "inputs" / "data.npz").is_file()
    assert s.raw["baseline_training"]["trained"] is False

    df, feats = user["df"], user["feats"]
    s = mlbench.run(base, run_dir=tmp_path / "b", model=user["root"] / "clf.onnx", data=df[[*feats, "target"]])
    preds = np.load(tmp_path / "b" / "predictions" / "baseline.npz")
    want = onnx_user["clf"].predict(df[feats].to_numpy(np.float32)[preds["index"]])
    assert (np.array(s.raw["data"]["class_names"])[preds["probs"].argmax(1)] == want).all()
    assert s.raw["inputs"]["data"]["normalization"] == {}  # a model of one's own gets the columns as given

    from mlbench.errors import MlbenchError
    with pytest.raises(MlbenchError, match="a weights file needs its class"):
        mlbench.run(base, run_dir=tmp_path / "c", model=user["root"] / "net.safetensors", data=(user["x"], user["y"]))


# ------------------------------------------------------------------ your own metric

METRIC = '''
import numpy as np

def top2_accuracy(probs, labels):
    """Fraction of items whose label is among the two most probable classes."""
    top2 = np.argsort(-probs, axis=1)[:, :2]
    return float((top2 == labels[:, None]).any(1).mean())

def mean_true_prob(probs, labels):
    return float(probs[np.arange(len(labels)), labels].mean())

def broken(probs, labels):
    raise ValueError("this hook is broken")

def words(probs, labels):
    return "high"

def auc(probs, labels):
    """ROC AUC of the positive class: binary data only."""
    from sklearn.metrics import roc_auc_score
    return float(roc_auc_score(labels, probs[:, 1]))
'''


def test_a_users_metric_is_computed_bootstrapped_required_and_compared(tmp_path):
    import mlbench
    from mlbench.evaluate import extra
    hook = tmp_path / "my_metrics.py"
    hook.write_text(METRIC)
    try:
        _check_user_metric(mlbench, hook, tmp_path)
    finally:
        extra.register([])  # the metric table as other tests of this process expect it


def test_a_binary_only_metric_is_tried_with_the_datas_class_count(tmp_path):
    """roc_auc_score on probs[:, 1] fails on 3 classes: the hook is tried once the data says 2."""
    from sklearn.metrics import roc_auc_score

    from mlbench.evaluate import extra
    hook = tmp_path / "my_metrics.py"
    hook.write_text(METRIC)
    try:
        _, s, preds = _run(tmp_path, "data=breast_cancer", "variants=[]", f"metrics.extra=[{hook}:auc]")
    finally:
        extra.register([])
    assert s["variants"]["baseline"]["metrics"]["auc"] == pytest.approx(roc_auc_score(preds["labels"], preds["probs"][:, 1]))


def _check_user_metric(mlbench, hook, tmp_path):
    _, s, preds = _run(tmp_path, "data=wine", "variants=[prune50_ft]",
                       f"metrics.extra=[{hook}:top2_accuracy,{hook}:mean_true_prob]",
                       "requirements.checks=[{metric: mean_true_prob, op: '>=', value: 0.5}]")
    for name in ("baseline", "prune50_ft"):
        p = np.load(tmp_path / "run" / "predictions" / f"{name}.npz")
        top2 = np.argsort(-p["probs"], axis=1)[:, :2]
        assert s["variants"][name]["metrics"]["top2_accuracy"] == pytest.approx((top2 == p["labels"][:, None]).any(1).mean())
    b, v = (s["variants"][n]["metrics"]["mean_true_prob"] for n in ("baseline", "prune50_ft"))
    d = s["variants"]["prune50_ft"]["deltas"]["mean_true_prob"]
    assert d["value"] == pytest.approx(v - b) and d["ci_low"] <= d["value"] <= d["ci_high"] and d["ci_low"] < d["ci_high"]
    assert d["resamples"] == 200  # debug=smoke's eval.bootstrap.resamples
    req = s["variants"]["prune50_ft"]["requirements"]["checks"][0]
    assert req["metric"] == "mean_true_prob" and req["passed"] == (v >= 0.5)
    rows = mlbench.compare([tmp_path / "run"], metrics=["accuracy", "top2_accuracy"])
    assert {r["variant"]: r["top2_accuracy"] for r in rows}["baseline"] == s["variants"]["baseline"]["metrics"]["top2_accuracy"]
    report = (tmp_path / "run" / "report.md").read_text()
    assert "top2_accuracy" in report and "mean_true_prob" in report

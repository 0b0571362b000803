"""model=timm and model=torchvision: a zoo model by name with a local weights file.

The user's artifacts are built here, offline: a timm model and a torchvision model created with
random weights and trained briefly on digits written as RGB PNG files in class folders, saved as
safetensors with a config.json (timm's ``save_for_hf``), a state dict, a ``.pt2``
program and an ONNX file. Each run's baseline predictions are checked item for item against an
evaluation written in the test: Pillow-decoded images through torchvision.transforms.v2's
evaluation transform (resize, center crop, normalize) and the test's own module.

timm and torchvision wheels must match the installed torch build; where they do not import,
these tests skip (``scripts/check_zoo.sh`` builds an environment where they run)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import run_in_process
from PIL import Image
from sklearn.datasets import load_digits

timm = pytest.importorskip("timm")
torchvision = pytest.importorskip("torchvision")
from torchvision.transforms import v2 as T  # noqa: E402

FAST = ("variants=[]", "stress=none", "monitor=none", "datacheck=none", "eval.efficiency=false")
NAMES = [f"digit_{k}" for k in range(10)]


def _train(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, steps: int = 40) -> torch.nn.Module:
    torch.manual_seed(0)
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    model.train()
    for _ in range(steps):
        for i in range(0, len(x), 256):
            opt.zero_grad()
            torch.nn.functional.cross_entropy(model(x[i:i + 256]), y[i:i + 256]).backward()
            opt.step()
    return model.eval()


def _eval(model: torch.nn.Module, transform, x: torch.Tensor) -> np.ndarray:
    with torch.no_grad():
        return model(transform(x)).argmax(1).numpy()


@pytest.fixture(scope="module")
def zoo(tmp_path_factory):
    root = tmp_path_factory.mktemp("zoo")
    d = load_digits()
    for i, (img, y) in enumerate(zip(d.images, d.target)):
        folder = root / "images" / NAMES[y]
        folder.mkdir(parents=True, exist_ok=True)
        Image.fromarray((img * 255 / 16).round().astype(np.uint8), "L").convert("RGB").save(folder / f"{i:04d}.png")
    files = sorted((root / "images").glob("*/*.png"), key=lambda p: (p.parent.name, p.name))
    x = torch.from_numpy(np.stack([np.asarray(Image.open(p).convert("RGB"), dtype=np.float32).transpose(2, 0, 1)
                                   for p in files]) / 255.0)
    y = torch.tensor([NAMES.index(p.parent.name) for p in files])
    out = {"root": root, "x": x, "y": y}

    # timm at the data's size: safetensors + config.json (architecture, pretrained_cfg, label_names)
    norm8 = T.Normalize([0.5] * 3, [0.5] * 3)
    net = _train(timm.create_model("test_resnet", num_classes=10), norm8(x), y)
    net.pretrained_cfg = {**net.pretrained_cfg, "input_size": (3, 8, 8), "crop_pct": 1.0}
    timm.models.save_for_hf(net, str(root / "hf"), model_config={"label_names": NAMES}, safe_serialization=True,
                            data_config={"input_size": (3, 8, 8), "crop_pct": 1.0, "interpolation": "bilinear",
                                         "mean": (0.5,) * 3, "std": (0.5,) * 3})
    out["timm8"] = (net, norm8)

    # timm fed 16x16: resize 16/crop_pct -> 16, crop 16, the test_resnet pretrained_cfg's interpolation and mean/std
    cfg = timm.create_model("test_resnet").pretrained_cfg
    mode = T.InterpolationMode(cfg["interpolation"])
    up16 = T.Compose([T.Resize(int(16 / cfg["crop_pct"]), interpolation=mode, antialias=False),
                      T.CenterCrop(16), T.Normalize(cfg["mean"], cfg["std"])])
    net16 = _train(timm.create_model("test_resnet", num_classes=10), up16(x), y)
    torch.save({"epoch": 2, "state_dict_ema": net16.state_dict()}, root / "timm16.pth")
    out["timm16"] = (net16, up16)
    out["timm16_cfg"] = cfg

    # torchvision: shufflenet at 32x32 with the DEFAULT preset's interpolation and mean/std
    t = torchvision.models.get_model_weights("shufflenet_v2_x0_5").DEFAULT.transforms()
    up32 = T.Compose([T.Resize(32, interpolation=T.InterpolationMode.BILINEAR, antialias=False), T.CenterCrop(32),
                      T.Normalize(t.mean, t.std)])
    tv = _train(torchvision.models.get_model("shufflenet_v2_x0_5", num_classes=10), up32(x), y, steps=25)
    torch.save(tv.state_dict(), root / "shufflenet.pth")
    out["tv32"] = (tv, up32)

    # the deployable graph of the 8x8 timm model, normalization included: .pt2 and ONNX
    wrapped = torch.nn.Sequential(_Normalize(0.5, 0.5), net).eval()
    program = torch.export.export(wrapped, (x[:2],), dynamic_shapes=({0: torch.export.Dim("batch")},))
    torch.export.save(program, str(root / "timm8.pt2"))
    torch.onnx.export(wrapped, (x[:2],), str(root / "timm8.onnx"), input_names=["x"], output_names=["logits"],
                      dynamic_axes={"x": {0: "n"}, "logits": {0: "n"}}, dynamo=False)
    return out


class _Normalize(torch.nn.Module):
    def __init__(self, mean: float, std: float):
        super().__init__()
        self.mean, self.std = mean, std

    def forward(self, x):
        return (x - self.mean) / self.std


def _run(tmp_path, zoo, *overrides):
    _, summary = run_in_process(*FAST, "data=image_folder", f"data.root={zoo['root'] / 'images'}", "data.mode=RGB",
                                "train=none", *overrides, run_dir=tmp_path / "run", cache=tmp_path / "cache")
    preds = np.load(tmp_path / "run" / "predictions" / "baseline.npz")
    return summary, preds


def _same_as_plain_torch(zoo, key, summary, preds):
    model, transform = zoo[key]
    mine = _eval(model, transform, zoo["x"][preds["index"]])
    assert (preds["probs"].argmax(1) == mine).all()
    assert (preds["labels"] == zoo["y"][preds["index"]].numpy()).all()
    assert summary["variants"]["baseline"]["metrics"]["accuracy"] == pytest.approx((mine == preds["labels"]).mean())
    assert summary["variants"]["baseline"]["metrics"]["accuracy"] > 0.5  # the weights were loaded


def test_timm_from_a_save_for_hf_folder_takes_name_preprocessing_and_class_names_from_config_json(zoo, tmp_path):
    s, preds = _run(tmp_path, zoo, "model=timm", f"model.weights={zoo['root'] / 'hf' / 'model.safetensors'}")
    _same_as_plain_torch(zoo, "timm8", s, preds)
    m = s["inputs"]["model"]
    assert (m["source"], m["arch"], m["weights_only"]) == ("timm", "timm:test_resnet", True)
    assert m["class_names"] == NAMES and "config.json" in m["class_names_from"]
    pre = m["preprocessing"]
    assert pre["mean"] == [0.5] * 3 and "config.json" in pre["from"]["mean"]
    assert "resize" not in (pre["where"] or "")  # the data has the model's size: no resize layer


def test_timm_resizes_inside_the_model_like_torchvisions_eval_transform(zoo, tmp_path):
    s, preds = _run(tmp_path, zoo, "model=timm", "model.name=test_resnet", "model.input_size=[3,16,16]",
                    f"model.weights={zoo['root'] / 'timm16.pth'}")
    _same_as_plain_torch(zoo, "timm16", s, preds)
    m = s["inputs"]["model"]
    assert m["key"] == "state_dict_ema"
    pre = m["preprocessing"]
    assert pre["interpolation"] == zoo["timm16_cfg"]["interpolation"]
    assert pre["from"]["interpolation"].startswith("timm pretrained_cfg test_resnet")
    assert pre["resize"] == 16 and pre["from"]["input_size"] == "config" and "center-crop 16x16" in pre["where"]
    assert pre["from"]["resize"].startswith("config input_size x the resize/crop ratio of timm pretrained_cfg")


def test_torchvision_takes_the_presets_transforms_and_runs_the_default_variants(zoo, tmp_path):
    _, s = run_in_process("data=image_folder", f"data.root={zoo['root'] / 'images'}", "data.mode=RGB", "train=none",
                          "model=torchvision", "model.name=shufflenet_v2_x0_5", "model.input_size=[3,32,32]",
                          "model.resize=32", f"model.weights={zoo['root'] / 'shufflenet.pth'}", "debug=smoke",
                          "stress=none", "monitor=none", run_dir=tmp_path / "run", cache=tmp_path / "cache")
    preds = np.load(tmp_path / "run" / "predictions" / "baseline.npz")
    _same_as_plain_torch(zoo, "tv32", s, preds)
    pre = s["inputs"]["model"]["preprocessing"]
    assert pre["from"]["mean"] == "torchvision ShuffleNet_V2_X0_5_Weights.IMAGENET1K_V1 transforms"
    assert pre["interpolation"] == "bilinear"
    status = {k: v["status"] for k, v in s["variants"].items()}
    assert status["onnx_fp32"] == "ok" and status["ort_int8_dynamic"] == "ok", status


@pytest.mark.parametrize("source", ["pt2", "onnx"])
def test_the_exported_timm_model_as_pt2_and_onnx_matches_plain_torch(zoo, tmp_path, source):
    path = zoo["root"] / f"timm8.{source}"
    more = ["model=torch", f"model.weights={path}"] if source == "pt2" else ["model=onnx", f"model.path={path}"]
    s, preds = _run(tmp_path, zoo, *more)
    _same_as_plain_torch(zoo, "timm8", s, preds)


def test_zoo_bad_inputs_are_one_line(zoo, tmp_path):
    from mlbench.errors import MlbenchError
    from mlbench.models.hub_sources import TimmModel, TorchvisionModel
    with pytest.raises(MlbenchError, match="timm has no model 'resnet_nope'"):
        TimmModel(name="resnet_nope")
    with pytest.raises(MlbenchError, match="torchvision has no model 'resnet_nope'"):
        TorchvisionModel(name="resnet_nope")
    with pytest.raises(MlbenchError, match="model.interpolation must be one of"):
        TimmModel(name="test_resnet", interpolation="lanczos")
    with pytest.raises(MlbenchError, match="takes RGB images"):
        TorchvisionModel(name="shufflenet_v2_x0_5")((1, 8, 8), 10)
    with pytest.raises(MlbenchError, match="model.preset: torchvision has no weights 'NOPE'"):
        TorchvisionModel(name="shufflenet_v2_x0_5", preset="NOPE")((3, 8, 8), 10)
    with pytest.raises(MlbenchError, match="mismatch|missing|unexpected|shape"):  # 10-class weights, 5-class head
        TimmModel(name="test_resnet", weights=str(zoo["root"] / "timm16.pth"))((3, 16, 16), 5)

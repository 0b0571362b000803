"""``mlbench examples [FOLDER]``: write the kind of inputs a user brings, from embedded data, so
the README's "your model and your data" commands run anywhere, offline.

- ``digits_png/<class>/<n>.png``: scikit-learn's digits as 8x8 grey PNG files in class folders;
- ``net.py``: a model class of the user's own (not an mlbench model);
- ``net.safetensors`` (class names in its metadata), ``net.pt`` (a training checkpoint dict with
  the state dict under ``state_dict`` and DataParallel's ``module.`` prefix), ``net.pt2``
  (a ``torch.export`` program), ``net.onnx`` (its ONNX export): the same weights, trained on
  those images;
- ``my_metrics.py``: a metric of the user's own (``metrics.extra``);
- ``patients.csv`` and ``patients.parquet``: scikit-learn's breast-cancer table with a text
  diagnosis, a categorical column, a group, a patient id, a visit date and a few missing values;
  ``patients_new.csv``: 120 of its rows without the diagnosis, one column measured 25 % larger
  (unlabelled data with a shift, for ``data.unlabelled``);
- where timm and torchvision are installed: ``timm_resnet/`` (timm's ``save_for_hf`` folder:
  ``model.safetensors`` and a ``config.json`` with the architecture, preprocessing and class
  names) and ``shufflenet.pth`` (a torchvision state dict), trained on the same digits.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import sys
from pathlib import Path
from typing import Any

import numpy as np

NET = '''"""A classifier of the user's own: its own layer names and constructor."""
import torch
from torch import nn


class Net(nn.Module):
    def __init__(self, num_classes: int = 10, channels: int = 16):
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(1, channels, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(channels, 2 * channels, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.classifier = nn.Linear(2 * channels, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x))
'''


def write_images(folder: Path) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Digits as PNG files; returns the images as the folder's reader orders them, in [0, 1]."""
    from PIL import Image
    from sklearn.datasets import load_digits

    d = load_digits()
    names = [f"digit_{k}" for k in range(10)]
    xs, ys = [], []
    for i, (img, y) in enumerate(zip(d.images, d.target)):
        pixels = (img * 255 / 16).round().astype(np.uint8)
        path = folder / names[y] / f"{i:04d}.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(pixels, "L").save(path)
    for c, name in enumerate(names):
        for p in sorted((folder / name).glob("*.png")):
            xs.append(np.asarray(Image.open(p), dtype=np.float32)[None] / 255.0)
            ys.append(c)
    return np.stack(xs), np.array(ys), names


def fit(net: Any, x: Any, y: Any, epochs: int) -> Any:
    """A few epochs of Adam on mini-batches of 64; the module in eval mode."""
    import torch
    opt = torch.optim.Adam(net.parameters(), lr=3e-3)
    net.train()
    for _ in range(epochs):
        for idx in torch.randperm(len(x)).split(64):
            opt.zero_grad()
            torch.nn.functional.cross_entropy(net(x[idx]), y[idx]).backward()
            opt.step()
    return net.eval()


def write_zoo(folder: Path, x: np.ndarray, y: np.ndarray, names: list[str]) -> list[str]:
    """Where timm / torchvision import: ``timm_resnet/`` (timm's ``save_for_hf``: safetensors and a
    config.json with the architecture, preprocessing and class names; grey 8x8 digits) and
    ``shufflenet.pth`` (a torchvision state dict for RGB digits seen at 32x32). What was written."""
    import torch

    from mlbench.models.hub_sources import ResizeCrop
    from mlbench.models.sources import Preprocessed
    written = []
    xt, yt = torch.from_numpy(x), torch.from_numpy(y)
    try:
        import timm
    except Exception:
        timm = None
    if timm is not None:
        torch.manual_seed(0)
        net = timm.create_model("test_resnet", num_classes=len(names), in_chans=1)
        fit(Preprocessed(net, [0.5], [0.5], tuple(x.shape[1:])), xt, yt, epochs=10)
        data_config = {"input_size": tuple(x.shape[1:]), "crop_pct": 1.0, "interpolation": "bilinear",
                       "mean": (0.5,), "std": (0.5,)}
        net.pretrained_cfg = {**net.pretrained_cfg, **data_config}
        timm.models.save_for_hf(net, str(folder / "timm_resnet"), model_config={"label_names": names},
                                safe_serialization=True, data_config=data_config)
        written.append("timm_resnet/")
    try:
        import torchvision
    except Exception:
        torchvision = None
    if torchvision is not None:
        torch.manual_seed(0)
        t = torchvision.models.get_model_weights("shufflenet_v2_x0_5").DEFAULT.transforms()
        net = torchvision.models.get_model("shufflenet_v2_x0_5", num_classes=len(names))
        rgb = xt.expand(-1, 3, -1, -1)
        fit(torch.nn.Sequential(ResizeCrop(32, (32, 32), "bilinear"), Preprocessed(net, t.mean, t.std, (3, 32, 32))),
            rgb, yt, epochs=8)
        torch.save(net.state_dict(), folder / "shufflenet.pth")
        written.append("shufflenet.pth")
    return written


def write_model(folder: Path, x: np.ndarray, y: np.ndarray, names: list[str]) -> None:
    """net.py and its weights (trained for a few seconds) in three formats."""
    import torch
    from safetensors.torch import save_file

    (folder / "net.py").write_text(NET)
    spec = importlib.util.spec_from_file_location("net", folder / "net.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    torch.manual_seed(0)
    net = fit(module.Net(), torch.from_numpy(x), torch.from_numpy(y), epochs=15)
    state = net.state_dict()
    save_file(state, str(folder / "net.safetensors"), metadata={"class_names": json.dumps(names)})
    torch.save({"epoch": 15, "state_dict": {f"module.{k}": v for k, v in state.items()}}, folder / "net.pt")
    program = torch.export.export(net, (torch.zeros(2, *x.shape[1:]),),
                                  dynamic_shapes=({0: torch.export.Dim("batch")},))
    torch.export.save(program, str(folder / "net.pt2"))
    torch.onnx.export(program, (torch.zeros(2, *x.shape[1:]),), str(folder / "net.onnx"), input_names=["image"],
                      output_names=["logits"], dynamic_shapes=({0: torch.export.Dim("batch")},), external_data=False)


METRIC = '''"""A metric of the user's own, for metrics.extra: (probabilities, labels) -> a number."""
import numpy as np


def top2_accuracy(probs: np.ndarray, labels: np.ndarray) -> float:
    """Fraction of items whose label is among the two most probable classes."""
    top2 = np.argsort(-probs, axis=1)[:, :2]
    return float((top2 == labels[:, None]).any(1).mean())
'''


def write_table(folder: Path) -> None:
    import pandas as pd
    from sklearn.datasets import load_breast_cancer

    bc = load_breast_cancer(as_frame=True)
    df = bc.frame.rename(columns=lambda c: c.replace(" ", "_"))
    rng = np.random.default_rng(0)
    df.insert(0, "patient", [f"P{i:04d}" for i in rng.permutation(len(df))])
    df.insert(1, "visit", pd.Timestamp("2024-01-01") + pd.to_timedelta(np.sort(rng.integers(0, 365, len(df))), "D"))
    df.insert(2, "sex", rng.choice(["female", "male"], len(df)))
    df.insert(3, "clinic", rng.choice(["north", "south", "east"], len(df)))
    df["diagnosis"] = np.where(df.pop("target") == 1, "benign", "malignant")
    df.loc[rng.choice(len(df), 12, replace=False), "mean_texture"] = np.nan
    df.to_csv(folder / "patients.csv", index=False)
    df.to_parquet(folder / "patients.parquet", index=False)
    new = df.drop(columns="diagnosis").sample(120, random_state=1)  # next month's patients: no diagnosis yet
    new["mean_radius"] *= 1.25  # measured with a recalibrated instrument
    new.to_csv(folder / "patients_new.csv", index=False)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="mlbench examples", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("folder", nargs="?", default="examples", help="where to write them (default: examples)")
    args = ap.parse_args(sys.argv[2:] if argv is None else argv)
    folder = Path(args.folder)
    folder.mkdir(parents=True, exist_ok=True)
    x, y, names = write_images(folder / "digits_png")
    write_model(folder, x, y, names)
    write_table(folder)
    (folder / "my_metrics.py").write_text(METRIC)
    zoo = write_zoo(folder, x, y, names)
    print(f"wrote {folder}/: digits_png/ ({len(y)} PNG files in {len(names)} class folders), net.py, "
          "net.safetensors, net.pt, net.pt2, net.onnx, patients.csv, patients.parquet, patients_new.csv, my_metrics.py"
          + "".join(f", {w}" for w in zoo) + ("" if len(zoo) == 2 else " (timm_resnet/ and shufflenet.pth "
                                               "need timm and torchvision)"))
    return 0

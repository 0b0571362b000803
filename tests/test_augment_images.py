"""Image augmentation through torchvision.transforms.v2 (needs a torchvision built for the installed
torch: scripts/check_zoo.sh runs these in such an environment; skipped elsewhere)."""

import pytest
import torch

from mlbench.data import DataMeta
from mlbench.train import augment

try:
    from torchvision.transforms import v2  # noqa: F401
except Exception:  # ImportError, or a torchvision built for another torch
    pytest.skip("torchvision does not import beside this torch (scripts/check_zoo.sh runs these)",
                allow_module_level=True)


def _meta(classes=10):
    return DataMeta("img", (1, 8, 8), classes, [str(i) for i in range(classes)], "image", (0.0, 1.0))


def test_item_transforms_are_drawn_per_item_and_seeded(make_cfg):
    aug = augment.build(make_cfg("augment=image_noise"), _meta())
    x = torch.full((16, 1, 8, 8), 0.5)
    torch.manual_seed(0)
    a, y = aug(x, torch.arange(16) % 10)
    assert a.shape == x.shape and torch.equal(y, torch.arange(16) % 10)
    assert all(not torch.equal(a[0], a[i]) for i in range(1, 16))  # not one draw for the whole batch
    assert a.min() >= 0 and a.max() <= 1  # clipped to the data's input range
    torch.manual_seed(0)
    assert torch.equal(aug(x, torch.arange(16) % 10)[0], a)


def test_the_natural_preset_crops_to_the_datas_own_size(make_cfg):
    aug = augment.build(make_cfg("augment=image_natural"), _meta())
    assert list(aug.transforms[0].size) == [8, 8] and aug.transforms[0].padding == [4, 4, 4, 4]
    torch.manual_seed(0)
    x = torch.rand(64, 1, 8, 8)
    a, _ = aug(x, torch.zeros(64, dtype=torch.long))
    assert a.shape == x.shape and (a == 0).any()  # shifted in from the zero padding


def test_mixup_and_cutmix_give_soft_labels_that_sum_to_one(make_cfg):
    aug = augment.build(make_cfg("augment=image_mix"), _meta())
    torch.manual_seed(0)
    x = torch.rand(32, 1, 8, 8)
    xb, yb = aug(x, torch.arange(32) % 10)
    assert yb.shape == (32, 10) and torch.allclose(yb.sum(1), torch.ones(32))
    assert (yb.max(1).values < 1).any()  # mixed


def test_train_time_blur_buys_accuracy_under_test_time_blur(run_stages, tmp_path):
    _, s = run_stages("augment=image_noise", "augment.compare=true", "stress=gaussian_blur", "variants=[]",
                      "datacheck=none", "monitor=none", "train.epochs=20")
    rows = {r["figure"]: r for r in s["augment"]["rows"]}
    for sev in ("3", "4", "5"):  # blur std 0.7 ... 1.0 px on 8x8 digits: the plain CNN falls to about 0.4
        assert rows[f"gaussian_blur @ {sev}"]["ci_low"] > 0.1, rows[f"gaussian_blur @ {sev}"]
    assert rows["accuracy"]["ci_low"] < 0.02  # no large gain on clean digits: the effect is the robustness

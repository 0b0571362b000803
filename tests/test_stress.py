"""Stressors against known answers: identities at zero strength, monotone damage, exact bit counts."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
import torch
from onnx import numpy_helper

from mlbench.backends import TorchRunner
from mlbench.compress import Artifact, OnnxExport, OrtQuantizeStatic, PassContext
from mlbench.data import BreastCancer, Digits
from mlbench.errors import MlbenchError
from mlbench.evaluate import evaluate
from mlbench.evaluate.loop import robust_accuracy
from mlbench.stress import (
    Attack,
    Brightness,
    Contrast,
    Explanations,
    FeatureNoise,
    GaussianBlur,
    GaussianNoise,
    ImpulseNoise,
    MissingFeatures,
    Occlusion,
    Pixelate,
    ScalingDrift,
    ShotNoise,
    WeightFaults,
)
from mlbench.stress.explain import spearman, topk_overlap
from mlbench.stress.faults import flip_bits_, onnx_with_faults, torch_with_faults

IMAGE = [GaussianNoise, ShotNoise, ImpulseNoise, GaussianBlur, Contrast, Brightness, Pixelate, Occlusion]
TABULAR = [FeatureNoise, MissingFeatures, ScalingDrift]


def acc(model, x, y):
    return evaluate(TorchRunner(model, torch.device("cpu")), x, y).metrics["accuracy"]


@pytest.mark.parametrize("cls", IMAGE)
def test_image_corruptions_identity_range_determinism(cls, digits_model):
    d, m = digits_model
    c = cls(severities=[0, 1, 5], seed=3)
    assert c.check(d.meta)
    x, y = d.x["test"], d.y["test"]
    assert torch.equal(c.perturb(x, y, 0), x)
    for s in (1, 5):
        out = c.perturb(x, y, s)
        assert out.shape == x.shape and out.min() >= 0 and out.max() <= 1
        c2 = cls(seed=3)
        c2.check(d.meta)
        assert torch.equal(out, c2.perturb(x, y, s)), "not deterministic under a seed"
    assert not torch.equal(c.perturb(x, y, 5), x)


@pytest.mark.parametrize("cls", IMAGE)
def test_corruptions_in_chunks_equal_one_call_and_the_formulas(cls, monkeypatch):
    """Deterministic corruptions run in chunks of items (bounded buffers): the result equals
    one call on the whole set; the noise corruptions equal their formula with the same draws."""
    import mlbench.stress.corruptions as corruptions
    from mlbench.stress.base import generator
    x = torch.rand(300, 3, 16, 16, generator=torch.Generator().manual_seed(0))
    c = cls(severities=[2, 5], seed=4)
    c.range = (0.0, 1.0)
    whole = [c.perturb(x, None, s) for s in (2, 5)]
    monkeypatch.setattr(corruptions, "CHUNK_BYTES", 7 * x[0].numel() * 4)  # chunks of 7 items (43 chunks)
    assert all(torch.equal(w, c.perturb(x, None, s)) for w, s in zip(whole, (2, 5), strict=True))
    if cls is GaussianNoise:
        g = generator(4, c.name, 5)
        ref = (x + cls.levels[4] * torch.randn(x.shape, generator=g)).clamp(0, 1)
        assert torch.equal(whole[1], ref)
    if cls is ShotNoise:
        g = generator(4, c.name, 5)
        ref = (torch.poisson(x * cls.levels[4], generator=g) / cls.levels[4]).clamp(0, 1)
        assert torch.equal(whole[1], ref)
    if cls is Occlusion:  # the patch is the range's minimum; the rest untouched
        changed = whole[1] != x
        assert bool((whole[1][changed] == 0).all()) and changed.any()


@pytest.mark.parametrize("cls", [GaussianNoise, ShotNoise, ImpulseNoise, GaussianBlur, Contrast])
def test_accuracy_does_not_rise_with_severity(cls, digits_model):
    d, m = digits_model
    c = cls(severities=[1, 2, 3, 4, 5])
    c.check(d.meta)
    accs = [acc(m, c.perturb(d.x["test"], d.y["test"], s), d.y["test"]) for s in range(0, 6)]
    assert accs[0] == acc(m, d.x["test"], d.y["test"])  # severity 0 is the clean accuracy
    assert all(b <= a + 0.02 for a, b in zip(accs, accs[1:])), accs
    assert accs[-1] <= accs[0]


@pytest.mark.parametrize("cls", TABULAR)
def test_tabular_corruptions(cls):
    d = BreastCancer().load()
    c = cls(seed=1)
    assert c.check(d.meta)
    x = d.x["test"]
    assert torch.equal(c.perturb(x, d.y["test"], 0), x)
    out = c.perturb(x, d.y["test"], 3)
    assert out.shape == x.shape and not torch.equal(out, x)
    if cls is MissingFeatures:
        share = ((out == 0) & (x != 0)).float().mean()
        assert 0.2 < share < 0.4  # severity 3 drops 30 % of values


def test_modality_mismatch_fails_or_skips():
    tab, img = BreastCancer().load().meta, Digits().load().meta
    with pytest.raises(MlbenchError, match="needs image data"):
        GaussianBlur().check(tab)
    assert GaussianBlur(when_unfit="skip").check(tab) is False
    with pytest.raises(MlbenchError, match="stress when_unfit must be one of error, skip, got 'maybe'"):
        GaussianBlur(when_unfit="maybe")
    with pytest.raises(MlbenchError, match="needs tabular data"):
        FeatureNoise().check(img)


def test_eps_outside_input_range_fails_at_setup():
    meta = Digits().load().meta
    with pytest.raises(MlbenchError, match="outside the input range"):
        Attack(eps=[0.1, 1.5]).check(meta)
    with pytest.raises(MlbenchError, match="outside the input range"):
        Attack(norm="L2", eps=[9.0], when_unfit="skip").check(meta)
    with pytest.raises(MlbenchError):
        Attack(eps=[-0.1])


def test_attacks_eps_zero_identity_and_pgd_stronger_than_fgsm(digits_model):
    d, m = digits_model
    x, y = d.x["test"][:200], d.y["test"][:200]
    clean = acc(m, x, y)
    for norm, eps in (("Linf", 0.1), ("L2", 1.0)):
        fgsm, pgd = Attack("fgsm", norm, [0.0, eps]), Attack("pgd", norm, [eps], steps=20, random_start=True)
        fgsm.check(d.meta), pgd.check(d.meta)
        assert torch.equal(fgsm.craft(m, x, y, 0.0), x)
        xf, xp = fgsm.craft(m, x, y, eps), pgd.craft(m, x, y, eps)
        for adv in (xf, xp):
            assert adv.min() >= 0 and adv.max() <= 1
            delta = (adv - x).flatten(1)
            size = delta.abs().amax(1) if norm == "Linf" else delta.norm(dim=1)
            assert (size <= eps + 1e-5).all()
        a_f, a_p = acc(m, xf, y), acc(m, xp, y)
        assert a_p <= a_f <= clean, (norm, clean, a_f, a_p)
    assert torch.equal(pgd.craft(m, x, y, eps), xp), "not deterministic under a seed"


def _popcount_diff(a: np.ndarray, b: np.ndarray) -> int:
    xa, xb = a.reshape(-1).view(np.uint8), b.reshape(-1).view(np.uint8)
    return int(np.unpackbits(xa ^ xb).sum())


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.uint8])
@pytest.mark.parametrize("ber", [0.0, 1e-4, 1e-3, 0.01])
def test_bit_flips_flip_exactly_the_expected_number(dtype, ber):
    t = (torch.rand(5000) * 100).to(dtype)
    before = t.clone()
    n = flip_bits_(t, ber, torch.Generator().manual_seed(0))
    bits = t.numel() * t.element_size() * 8
    assert n == round(ber * bits)
    a = before.view(torch.uint8).numpy() if dtype != torch.uint8 else before.numpy()
    b = t.view(torch.uint8).numpy() if dtype != torch.uint8 else t.numpy()
    assert _popcount_diff(a, b) == n


def test_torch_fault_model_zero_rate_and_exact_count(digits_model):
    d, m = digits_model
    same, n0 = torch_with_faults(m, "bitflip", 0.0, torch.Generator().manual_seed(0))
    assert n0 == 0 and acc(same, d.x["test"], d.y["test"]) == acc(m, d.x["test"], d.y["test"])
    faulty, n = torch_with_faults(m, "bitflip", 1e-4, torch.Generator().manual_seed(0))
    total_bits = sum(p.numel() * 32 for p in m.parameters())
    assert n == round(1e-4 * total_bits)
    diff = sum(_popcount_diff(p.detach().numpy(), q.detach().numpy()) for p, q in zip(m.parameters(), faulty.parameters()))
    assert diff == n
    assert all(torch.equal(p, q) for p, q in zip(m.parameters(), m.parameters()))  # original untouched
    assert robust_accuracy(torch.tensor([[float("nan"), 1.0], [0.0, 1.0]]), torch.tensor([1, 1])) == 0.5


def test_int8_onnx_faults_hit_int8_weights(digits_model, tmp_path):
    d, m = digits_model
    ctx = PassContext(data=d, device=torch.device("cpu"), workdir=tmp_path)
    q = OrtQuantizeStatic(num_samples=64)(OnnxExport()(Artifact(id="b", format="torch", model=m), ctx), ctx)
    path, n, fmt = onnx_with_faults(q.path, "bitflip", 1e-3, torch.Generator().manual_seed(1), tmp_path)
    assert fmt == "int8"
    def int8(p):
        return {t.name: numpy_helper.to_array(t) for t in onnx.load(str(p)).graph.initializer
                if t.data_type in (onnx.TensorProto.INT8, onnx.TensorProto.UINT8) and "zero_point" not in t.name
                and np.prod(t.dims) > 1}
    a, b = int8(q.path), int8(path)
    total = sum(v.size * 8 for v in a.values())
    assert n == round(1e-3 * total)
    assert sum(_popcount_diff(a[k], b[k]) for k in a) == n


def test_weight_fault_config_validation():
    with pytest.raises(MlbenchError):
        WeightFaults(mode="cosmic")
    with pytest.raises(MlbenchError):
        WeightFaults(rates=[2.0])


def test_attributions_compared_with_themselves_give_similarity_one(digits_model):
    d, m = digits_model
    ex = Explanations(n_items=16, ig_steps=8)
    x, y = d.x["test"][:16], d.y["test"][:16]
    for method in ("integrated_gradients", "saliency"):
        a = ex.attribute(m, x, y, method)
        b = ex.attribute(m, x, y, method)
        assert torch.allclose(spearman(a, b), torch.ones(16, dtype=torch.float64))
        assert torch.equal(topk_overlap(a, b, ex.k(64)), torch.ones(16, dtype=torch.float64))
        s = ex.scores(m, x, y, method, a)
        assert s["infidelity"] >= 0 and s["sensitivity_max"] >= 0
    r = torch.randn(16, 64, dtype=torch.float64)
    assert (spearman(r, -r) + 1).abs().max() < 1e-9  # reversed ranks: -1

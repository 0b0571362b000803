"""Attacks against known answers: the closed form for a linear model and an independent PGD."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from mlbench.errors import MlbenchError
from mlbench.stress import Attack


class BinaryLogistic(nn.Module):
    """Logistic regression as a two-logit classifier: logits [0, w.x + b]."""

    def __init__(self, w: torch.Tensor, b: float):
        super().__init__()
        self.lin = nn.Linear(len(w), 1)
        with torch.no_grad():
            self.lin.weight.copy_(w[None])
            self.lin.bias.fill_(b)

    def forward(self, x):
        s = self.lin(x)
        return torch.cat([torch.zeros_like(s), s], 1)


def _linear_problem(seed=0, n=4000, d=12):
    g = torch.Generator().manual_seed(seed)
    w = torch.randn(d, generator=g)
    w[0] = 0.0  # a feature the model ignores: no gradient there
    b = 0.3
    x = torch.rand(n, d, generator=g)
    y = ((x - 0.5) @ w + 0.4 * torch.randn(n, generator=g) > 0).long()
    return BinaryLogistic(w, b - 0.5 * float(w.sum())), x, y, w


def _closed_form_survivors(model, x, y, eps, bounds, norm="Linf"):
    """An item survives iff its signed margin exceeds the most the attack can take off it."""
    w, b = model.lin.weight[0].detach(), float(model.lin.bias)
    sign = 2 * y.float() - 1  # +1: label 1 wants w.x+b > 0
    margin = sign * (x @ w + b)
    if norm == "L2":
        return margin > eps * w.norm()
    lo, hi = bounds
    adverse = -sign[:, None] * torch.sign(w)[None]  # the direction that lowers the margin, per feature
    room = torch.where(adverse > 0, hi - x, x - lo)
    return margin > (w.abs()[None] * torch.minimum(torch.full_like(x, eps), room)).sum(1)


@pytest.mark.parametrize("loss", ["ce", "margin"])
@pytest.mark.parametrize("bounded", [True, False])
@pytest.mark.parametrize("eps", [0.02, 0.05, 0.15])
def test_fgsm_linf_equals_the_closed_form_for_a_linear_model(loss, bounded, eps):
    model, x, y, _ = _linear_problem()
    att = Attack("fgsm", "Linf", [eps], loss=loss)
    bounds = (0.0, 1.0) if bounded else (-float("inf"), float("inf"))
    att.bounds = bounds
    adv = att.craft(model, x, y, eps)
    with torch.no_grad():
        robust = (model(adv).argmax(1) == y)
    expected = _closed_form_survivors(model, x, y, eps, bounds)
    assert 0.05 < expected.float().mean() < 0.98  # the case is not trivial
    assert torch.equal(robust, expected), f"{int((robust != expected).sum())} items differ"


@pytest.mark.parametrize("eps", [0.1, 0.5])
def test_fgsm_l2_equals_the_closed_form_for_a_linear_model(eps):
    model, x, y, _ = _linear_problem(seed=1)
    att = Attack("fgsm", "L2", [eps])
    adv = att.craft(model, x, y, eps)
    with torch.no_grad():
        robust = (model(adv).argmax(1) == y)
    expected = _closed_form_survivors(model, x, y, eps, None, norm="L2")
    assert torch.equal(robust, expected)
    assert torch.allclose((adv - x).norm(dim=1), torch.full((len(x),), eps), atol=1e-5)


def test_captum_default_loss_overstates_robustness_on_the_same_case():
    """The loss matters: captum's default -log(output[y]) on logits survives where CE does not."""
    from captum.robust import FGSM
    model, x, y, _ = _linear_problem()
    eps = 0.1
    expected = _closed_form_survivors(model, x, y, eps, (0.0, 1.0)).float().mean()
    default = FGSM(model, lower_bound=0.0, upper_bound=1.0).perturb(x.clone().requires_grad_(), eps, y)
    with torch.no_grad():
        overstated = (model(default).argmax(1) == y).float().mean()
    assert overstated > expected + 0.01


def hand_pgd(model, x, y, eps, alpha, steps):
    """Madry et al.'s PGD under L-inf with cross-entropy, written out independently."""
    adv = x.clone()
    for _ in range(steps):
        adv.requires_grad_(True)
        loss = F.cross_entropy(model(adv), y, reduction="sum")
        (grad,) = torch.autograd.grad(loss, adv)
        adv = adv.detach() + alpha * grad.sign()
        adv = torch.min(torch.max(adv, x - eps), x + eps).clamp(0.0, 1.0)
    return adv.detach()


@pytest.mark.parametrize("method,eps", [("fgsm", 0.1), ("pgd", 0.05), ("pgd", 0.1)])
def test_mlbench_attack_agrees_with_a_hand_written_one_on_the_digits_model(digits_model, method, eps):
    d, model = digits_model
    x, y = d.x["test"], d.y["test"]
    att = Attack(method, "Linf", [eps], steps=10, step_ratio=0.25, random_start=False)
    att.check(d.meta)
    ours = att.craft(model, x, y, eps)
    steps, alpha = (1, eps) if method == "fgsm" else (10, 0.25 * eps)
    theirs = hand_pgd(model, x, y, eps, alpha, steps)
    with torch.no_grad():
        a = (model(ours).argmax(1) == y).sum().item()
        b = (model(theirs).argmax(1) == y).sum().item()
        clean = (model(x).argmax(1) == y).sum().item()
    assert abs(a - b) <= 1, (a, b)
    assert b < clean  # the attack does something


def test_unknown_loss_fails():
    with pytest.raises(MlbenchError, match="loss"):
        Attack(loss="nll")


# ------------------------------------------------------------------ Square (black-box, score-based)

@pytest.mark.parametrize("eps", [0.01, 0.02])
def test_square_attack_on_a_linear_model_is_sound_and_nearly_reaches_the_closed_form(eps):
    """Square only queries outputs, through a runner (the path an ONNX-only model takes). On a
    linear model over 16x16 images whose weights are smooth in space (constant on 8x8 blocks, as
    gradients of image models tend to be: Square's premise) the closed form says which items
    can be broken: none of the others may be (every adversarial input stays within eps and the
    bounds), and the search must break most of those that can be (it is a random search: on a
    dense linear model it converges slowly, 200 updates break about three quarters)."""
    from omegaconf import OmegaConf

    from mlbench.backends import runner_for
    from mlbench.compress import Artifact
    from mlbench.schema import BackendConf
    from mlbench.stress import SquareAttack
    g = torch.Generator().manual_seed(2)
    blocks = torch.randn(2, 2, generator=g)
    w = blocks.repeat_interleave(8, 0).repeat_interleave(8, 1).flatten() / 4
    x = torch.rand(1500, 256, generator=g)
    y = ((x - 0.5) @ w + 0.3 * torch.randn(1500, generator=g) > 0).long()
    model = BinaryLogistic(w, -0.5 * float(w.sum()))
    image = nn.Sequential(nn.Flatten(), model).eval()
    runner = runner_for(Artifact(id="lin", format="torch", model=image), OmegaConf.structured(BackendConf),
                        torch.device("cpu"))
    att = SquareAttack(eps=[eps], max_iter=200, seed=0)
    xi = x.view(-1, 1, 16, 16)
    adv, queries = att.craft(runner, xi, y, eps, num_classes=2)
    assert (adv - xi).abs().max() <= eps + 1e-6 and adv.min() >= 0 and adv.max() <= 1
    with torch.no_grad():
        robust = image(adv).argmax(1) == y
    expected = _closed_form_survivors(model, x, y, eps, (0.0, 1.0))
    assert 0.05 < expected.float().mean() < 0.98
    assert bool(robust[expected].all()), "an item the closed form says is robust was broken"
    with torch.no_grad():
        clean = image(xi).argmax(1) == y
    breakable = clean & ~expected
    assert (breakable & ~robust).sum() >= 0.5 * breakable.sum()
    assert 1 <= queries <= 3 * 201 + 1


def test_activation_bytes_is_the_sum_of_leaf_outputs_and_sizes_the_attack_batch(monkeypatch):
    """Linear(4, 3) + ReLU on one item keeps 2 × 3 float32 outputs (24 bytes); a conv net whose
    item needs a third of the budget is attacked three items at a time, with the same FGSM
    examples as in one batch (each item's gradient is its own)."""
    from mlbench.models import activation_bytes
    from mlbench.stress import adversarial

    assert activation_bytes(nn.Sequential(nn.Linear(4, 3), nn.ReLU()), torch.rand(1, 4)) == 24
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 64, 3)).eval()
    per_item = 4 * 64 * 4 * 2 + 3 * 4 + 4 * 64 * 4  # conv, relu, flatten, linear outputs
    assert activation_bytes(net, torch.rand(1, 1, 8, 8)) == per_item
    x, y = torch.rand(10, 1, 8, 8), torch.randint(0, 3, (10,))
    attack = Attack(method="fgsm", eps=[0.1])
    attack.bounds = (0.0, 1.0)
    whole = attack.craft(net, x, y, 0.1)
    assert attack.batch_for(net, x[:1]) == 256  # the configured batch when it fits
    monkeypatch.setattr(adversarial, "BATCH_ACTIVATION_BYTES", 3 * per_item + 1)
    assert attack.batch_for(net, x[:1]) == 3
    torch.testing.assert_close(attack.craft(net, x, y, 0.1), whole, rtol=0, atol=1e-6)


def test_a_wrong_attack_batch_size_is_one_line(tmp_path):
    from conftest import run_cli
    out = run_cli("debug=smoke", "stress=[fgsm]", "stress.fgsm.batch_size=0", cwd=tmp_path)
    assert out.returncode != 0
    assert "attack batch_size must be >= 1, got 0" in out.stderr + out.stdout
    assert "Traceback" not in out.stderr + out.stdout


def test_white_box_examples_scored_as_they_are_crafted_equal_the_whole_crafted_set():
    """PGD with a random start, crafted three items at a time and scored in batches of eight
    through ``Refill``: the same logits, bit for bit, as scoring the whole crafted set; the
    attack's random stream runs on from batch to batch (two copies of the same three items get
    different random starts) and leaves the caller's generator where it was."""
    from mlbench.backends import TorchRunner
    from mlbench.evaluate.loop import predict_all
    from mlbench.stress.base import Refill

    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 64, 3)).eval()
    x = torch.rand(3, 1, 8, 8).repeat(7, 1, 1, 1)  # 21 items: the same three, seven times
    y = torch.randint(0, 3, (3,)).repeat(7)
    attack = Attack(method="pgd", eps=[0.1], steps=2, random_start=True, batch_size=3)
    attack.bounds = (0.0, 1.0)
    whole = attack.craft(net, x, y, 0.1)
    assert not torch.equal(whole[:3], whole[3:6])  # one stream across batches, not re-seeded per batch
    runner = TorchRunner(net, torch.device("cpu"))
    torch.manual_seed(123)
    streamed = predict_all(runner, x, 8, Refill(attack.batches(x, y, 0.1, net)), y)
    after = torch.rand(4)
    torch.manual_seed(123)
    assert torch.equal(after, torch.rand(4))  # the caller's generator untouched
    assert torch.equal(streamed, predict_all(runner, whole, 8))
    assert torch.equal(attack.craft(net, x, y, 0.1), whole)  # seeded: the same examples again
    with pytest.raises(MlbenchError, match="ended before the test split"):
        predict_all(runner, x, 8, Refill(iter([whole[:5]])), y)  # a stream shorter than the split

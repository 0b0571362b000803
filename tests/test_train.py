"""Training reaches known accuracy; the baseline cache hits, survives corruption and concurrency."""

from __future__ import annotations

import json
import multiprocessing as mp
from pathlib import Path

import torch
from hydra.utils import instantiate

from mlbench.backends import TorchRunner
from mlbench.data import Digits
from mlbench.evaluate import evaluate
from mlbench.models import MLP
from mlbench.train import BaselineCache, fit


def _train_digits(model, epochs=30):
    d = Digits().load()
    opt = lambda p: torch.optim.AdamW(p, lr=3e-3, weight_decay=1e-4)  # noqa: E731
    sched = lambda o: torch.optim.lr_scheduler.CosineAnnealingLR(o, epochs)  # noqa: E731
    res = fit(model, d.x["train"], d.y["train"], d.x["val"], d.y["val"], epochs=epochs, batch_size=128,
              optimizer=opt, scheduler=sched, patience=8)
    return d, res


def test_default_cnn_reaches_95_percent_on_digits(make_cfg):
    cfg = make_cfg(smoke=False)
    d = instantiate(cfg.data).load()
    model = instantiate(cfg.model)(input_shape=d.meta.input_shape, num_classes=10)
    t = cfg.train
    fit(model, d.x["train"], d.y["train"], d.x["val"], d.y["val"], epochs=t.epochs, batch_size=t.batch_size,
        optimizer=instantiate(t.optimizer), scheduler=instantiate(t.scheduler), patience=t.patience)
    acc = evaluate(TorchRunner(model, torch.device("cpu")), d.x["test"], d.y["test"]).metrics["accuracy"]
    assert acc >= 0.95


def test_training_is_deterministic_on_cpu():
    torch.manual_seed(0)
    a = MLP((1, 8, 8), 10)
    torch.manual_seed(0)
    b = MLP((1, 8, 8), 10)
    _train_digits(a, epochs=3)
    _train_digits(b, epochs=3)
    for pa, pb in zip(a.parameters(), b.parameters()):
        assert torch.equal(pa, pb)


def test_thread_settings_resolve_as_documented_and_training_uses_its_own(make_cfg):
    from mlbench.env import TORCH_DEFAULT_THREADS, resolve_threads
    from mlbench.train.baseline import baseline_key, fit_kwargs

    physical = TORCH_DEFAULT_THREADS
    # auto: the physical cores that other processes do not keep busy, at least one
    assert resolve_threads("auto", busy=0.0) == (physical, {"setting": "auto", "physical": physical,
                                                           "busy_cores": 0.0})
    assert resolve_threads("auto", busy=physical - 0.6)[0] == 1
    assert resolve_threads("auto", busy=physical + 3)[0] == 1
    assert resolve_threads(0)[0] == physical and resolve_threads(3)[0] == 3

    d = Digits().load()
    before = torch.get_num_threads()
    torch.set_num_threads(1)  # the run's count
    try:
        for asked, expected in ((3, 3), (0, physical)):
            seen = []
            fit(MLP((1, 8, 8), 10), d.x["train"][:64], d.y["train"][:64], d.x["val"][:32], d.y["val"][:32],
                epochs=1, batch_size=32, optimizer=lambda p: torch.optim.SGD(p, lr=0.1), threads=asked,
                post_step=lambda m: seen.append(torch.get_num_threads()))
            assert set(seen) == {expected}  # training runs on its own count ...
            assert torch.get_num_threads() == 1  # ... and the run's count is restored afterwards
    finally:
        torch.set_num_threads(before)

    # the trained weights depend on the training thread count, so the cache key does too
    c1, c2 = make_cfg("train.threads=1"), make_cfg("train.threads=2")
    assert fit_kwargs(c2, torch.device("cpu"))["threads"] == 2
    assert baseline_key(c1, torch.device("cpu"), 0, "h") != baseline_key(c2, torch.device("cpu"), 0, "h")


def _tiny_train(model):
    with torch.no_grad():
        for p in model.parameters():
            p.fill_(0.5)
    return {"trained": True}


def test_cache_hit_and_corruption_recovery(tmp_path, caplog):
    cache = BaselineCache(tmp_path)
    calls = []

    def train(m):
        calls.append(1)
        return _tiny_train(m)

    _, hit = cache.load_or_train("k1", MLP((4,), 2), train)
    assert not hit and len(calls) == 1
    m2 = MLP((4,), 2)
    _, hit = cache.load_or_train("k1", m2, train)
    assert hit and len(calls) == 1
    assert all(torch.all(p == 0.5) for p in m2.parameters())
    # corrupt the weights: detected by checksum, reported, retrained
    w = tmp_path / "k1" / "model.safetensors"
    w.write_bytes(w.read_bytes()[:50])
    _, hit = cache.load_or_train("k1", MLP((4,), 2), train)
    assert not hit and len(calls) == 2
    assert "corrupt" in caplog.text
    # corrupt metadata too
    (tmp_path / "k1" / "meta.json").write_text("{not json")
    _, hit = cache.load_or_train("k1", MLP((4,), 2), train)
    assert not hit and len(calls) == 3


def _worker(root: str, out: str) -> None:
    import time
    cache = BaselineCache(root)

    def train(m):
        time.sleep(0.5)  # make the race window wide
        Path(out).with_suffix(".trained").write_text("1")
        return _tiny_train(m)

    _, hit = cache.load_or_train("shared", MLP((4,), 2), train)
    Path(out).write_text(json.dumps({"hit": hit}))


def test_concurrent_jobs_train_once_and_never_corrupt(tmp_path):
    ctx = mp.get_context("spawn")
    procs = [ctx.Process(target=_worker, args=(str(tmp_path / "cache"), str(tmp_path / f"p{i}.json")))
             for i in range(3)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
        assert p.exitcode == 0
    hits = [json.loads((tmp_path / f"p{i}.json").read_text())["hit"] for i in range(3)]
    assert sorted(hits) == [False, True, True]
    assert len(list(tmp_path.glob("*.trained"))) == 1
    assert [p.name for p in (tmp_path / "cache").iterdir() if not p.name.endswith(".lock")] == ["shared"]

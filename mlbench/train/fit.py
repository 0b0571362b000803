"""The training loop used for baselines and fine-tuning.

Small datasets are kept on the device and batched by indexing (no DataLoader),
which is what makes a CPU run of the default job take seconds.
"""

from __future__ import annotations

import copy
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from mlbench.env import TORCH_DEFAULT_THREADS, torch_threads
from mlbench.errors import MlbenchError
from mlbench.process import release_memory
from mlbench.progress import progress

ON_DEVICE_FRACTION = 0.25  # keep data on a GPU when it needs under this share of free memory


@dataclass
class FitResult:
    """What training did: best epoch (by val loss), per-epoch history, wall time."""

    best_epoch: int
    best_val_loss: float
    history: list[dict[str, float]] = field(default_factory=list)
    train_s: float = 0.0  # wall time of the whole fit, validation included
    samples_per_s: float = 0.0  # training samples per second of optimizer steps


def _fits_on(device: torch.device, nbytes: int) -> bool:
    if device.type != "cuda":
        return True
    free, _ = torch.cuda.mem_get_info(device)
    return nbytes < ON_DEVICE_FRACTION * free


def _prep(x: torch.Tensor, device: torch.device, channels_last: bool) -> torch.Tensor:
    x = x.to(device, non_blocking=True)
    if channels_last and x.dim() == 4:
        x = x.contiguous(memory_format=torch.channels_last)
    return x


@torch.no_grad()
def _val_loss(model, x, y, batch_size, device, amp_dtype, channels_last) -> tuple[float, float]:
    model.eval()
    total, correct = 0.0, 0
    for i in range(0, len(y), batch_size):
        xb = _prep(x[i:i + batch_size], device, channels_last)
        yb = y[i:i + batch_size].to(device, non_blocking=True)
        with torch.autocast(device.type, dtype=amp_dtype, enabled=amp_dtype is not None):
            out = model(xb)
        total += nn.functional.cross_entropy(out.float(), yb, reduction="sum").item()
        correct += (out.argmax(1) == yb).sum().item()
    return total / len(y), correct / len(y)


def fit(
    model: nn.Module,
    x_train: torch.Tensor,
    y_train: torch.Tensor,
    x_val: torch.Tensor,
    y_val: torch.Tensor,
    *,
    epochs: int,
    batch_size: int,
    optimizer: Callable[..., torch.optim.Optimizer],
    scheduler: Callable[..., object] | None = None,
    patience: int = 0,
    label_smoothing: float = 0.0,
    amp: str = "none",
    channels_last: bool = False,
    device: torch.device = torch.device("cpu"),
    seed: int = 0,
    post_step: Callable[[nn.Module], None] | None = None,
    desc: str = "train",
    threads: int = 0,
    augment: Any = None,
) -> FitResult:
    """Train ``model`` in place with early stopping on validation loss.

    ``optimizer`` and ``scheduler`` are factories (Hydra ``_partial_`` objects);
    the scheduler steps once per epoch. ``amp`` (``bf16``/``fp16``) and
    ``channels_last`` apply on CUDA only. ``patience`` 0 disables early
    stopping. The best weights (lowest val loss) are restored at the end.
    ``post_step`` runs after every optimizer step (fine-tuning uses it to keep
    pruned weights at zero). ``threads``: torch intra-op threads while training (0: the
    machine's physical cores; the trained weights depend on this number). ``augment``: a
    :class:`mlbench.train.augment.Augmenter` (its ``resample`` once, then every batch through it).
    """
    with torch_threads(threads or TORCH_DEFAULT_THREADS):
        return _fit(model, x_train, y_train, x_val, y_val, epochs=epochs, batch_size=batch_size,
                    optimizer=optimizer, scheduler=scheduler, patience=patience,
                    label_smoothing=label_smoothing, amp=amp, channels_last=channels_last,
                    device=device, seed=seed, post_step=post_step, desc=desc, augment=augment)


def _fit(model, x_train, y_train, x_val, y_val, *, epochs, batch_size, optimizer, scheduler,
         patience, label_smoothing, amp, channels_last, device, seed, post_step, desc, augment) -> FitResult:
    amp_dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(amp) if device.type == "cuda" else None
    channels_last = channels_last and device.type == "cuda"
    model.to(device)
    if channels_last:
        model.to(memory_format=torch.channels_last)
    opt = optimizer(model.parameters())
    sched = scheduler(opt) if scheduler is not None else None
    scaler = torch.amp.GradScaler(enabled=amp_dtype == torch.float16)
    if augment is not None:
        x_train, y_train = augment.resample(x_train, y_train, seed)
    nbytes = x_train.element_size() * x_train.numel()
    if _fits_on(device, nbytes):
        x_train, y_train = _prep(x_train, device, channels_last), y_train.to(device)
    gen = torch.Generator().manual_seed(seed)  # batch order
    torch.manual_seed(seed)  # dropout and other in-model randomness
    loss_fn = nn.CrossEntropyLoss(label_smoothing=label_smoothing)
    best = (float("inf"), -1, copy.deepcopy(model.state_dict()))
    result = FitResult(best_epoch=-1, best_val_loss=float("inf"))
    n = len(y_train)
    start, seen, train_time = time.perf_counter(), 0, 0.0
    with progress() as bar:
        task = bar.add_task(desc, total=epochs, info="")
        for epoch in range(epochs):
            model.train()
            perm = torch.randperm(n, generator=gen).to(y_train.device)
            running = torch.zeros((), device=device)
            t_epoch = time.perf_counter()
            for i in range(0, n, batch_size):
                idx = perm[i:i + batch_size]
                if len(idx) < 2 and n > 1:  # BatchNorm cannot train on one example
                    continue
                xb = _prep(x_train[idx], device, channels_last)
                yb = y_train[idx].to(device, non_blocking=True)
                if augment is not None:  # targets may become soft labels (MixUp/CutMix)
                    xb, yb = augment(xb, yb)
                with torch.autocast(device.type, dtype=amp_dtype, enabled=amp_dtype is not None):
                    loss = loss_fn(model(xb), yb)
                opt.zero_grad(set_to_none=True)
                scaler.scale(loss).backward()
                scaler.step(opt)
                scaler.update()
                if post_step is not None:
                    post_step(model)
                running += loss.detach() * len(idx)
                seen += len(idx)
            train_loss = running.item() / n  # .item() waits for the device
            train_time += time.perf_counter() - t_epoch
            if sched is not None:
                sched.step()
            release_memory()  # the training steps' freed activations, before the validation pass
            val_loss, val_acc = _val_loss(model, x_val, y_val, max(batch_size, 256), device,
                                          amp_dtype, channels_last)
            result.history.append({"epoch": epoch, "train_loss": train_loss,
                                   "val_loss": val_loss, "val_accuracy": val_acc})
            if val_loss < best[0]:
                best = (val_loss, epoch, copy.deepcopy(model.state_dict()))
            bar.update(task, advance=1, info=f"val_loss {val_loss:.4f} acc {val_acc:.3f}")
            if patience and epoch - best[1] >= patience:
                break
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    result.train_s = time.perf_counter() - start
    result.samples_per_s = seen / max(train_time, 1e-9)  # optimizer steps only, no validation
    if best[1] < 0:  # never a finite validation loss: the weights are not a trained model
        raise MlbenchError(f"{desc}: the validation loss was not finite in any of {len(result.history)} epoch(s) "
                           "(training diverged: lower train.optimizer.lr or check the inputs)")
    model.load_state_dict(best[2])
    if channels_last:
        model.to(memory_format=torch.contiguous_format)
    model.eval()
    result.best_val_loss, result.best_epoch = best[0], best[1]
    return result

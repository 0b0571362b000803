"""PyTorch passes: reduced precision, int8 quantization, pruning and fine-tuning."""

from __future__ import annotations

import functools
import warnings
from dataclasses import dataclass, field

import torch
from torch import nn
from torch.nn.utils import prune

from mlbench.compress.base import (
    Artifact,
    Facts,
    Pass,
    PassContext,
    copy_torch,
    modules_of,
)
from mlbench.errors import MlbenchError, VariantFailed
from mlbench.models import count_params
from mlbench.train.fit import fit

_PRUNABLE = ["Conv1d", "Conv2d", "Linear"]


@dataclass
class Half(Pass):
    """Cast the torch model to ``bf16`` or ``fp16``; the torch runner casts inputs to match.
    fp16 needs CUDA; bf16 also runs on CPUs."""

    name = "half"
    dtype: str = "bf16"

    def __post_init__(self):
        if self.dtype not in ("bf16", "fp16"):
            raise MlbenchError(f"half.dtype must be bf16 or fp16, got {self.dtype!r}")

    def apply(self, art: Artifact, ctx: PassContext):
        if self.dtype == "fp16" and ctx.device.type != "cuda":
            raise VariantFailed("half.dtype=fp16 needs CUDA; use bf16 on the CPU")
        dtype = torch.bfloat16 if self.dtype == "bf16" else torch.float16
        model = copy_torch(art).to(dtype)
        return Artifact(id="", format="torch", model=model, dtype=dtype), {"dtype": self.dtype}


@dataclass
class TorchQuantizeDynamic(Pass):
    """``torch.ao.quantization.quantize_dynamic``: int8 weights for the listed layer types
    (Linear by default), activations quantized per batch at run time. CPU kernels only."""

    name = "torch_quantize_dynamic"
    layers: list[str] = field(default_factory=lambda: ["Linear"])
    dtype: str = "qint8"

    def __post_init__(self):
        bad = set(self.layers) - {"Linear", "LSTM", "GRU"}
        if bad:
            raise MlbenchError(f"torch_quantize_dynamic.layers: unsupported {sorted(bad)}")

    def apply(self, art: Artifact, ctx: PassContext):
        from torch.ao.quantization import (
            quantize_dynamic,  # on use: loads the quantized kernels
        )
        model = copy_torch(art, "cpu")
        types = {getattr(nn, name) for name in self.layers}
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            q = quantize_dynamic(model, types, dtype=getattr(torch, self.dtype))
        n = len(modules_of(model, self.layers))
        return Artifact(id="", format="torch", model=q, cpu_only=True), \
            {"quantizer": "torch.ao.quantization.quantize_dynamic", "quantized_modules": n}


@dataclass
class TorchQuantizeStatic(Pass):
    """Static int8 quantization through the PT2E flow: ``torch.export``, torchao's
    ``X86InductorQuantizer`` (its default config), calibration on the calib split,
    ``convert_pt2e``. Without ``compile`` the result runs quantize/dequantize in
    float (simulated int8); ``compile: true`` lets inductor lower it to int8 kernels."""

    name = "torch_quantize_static"
    num_samples: int = 256
    calib_batch: int = 64
    compile: bool = False

    def apply(self, art: Artifact, ctx: PassContext):
        # torchao is optional and slow to import: on use
        from torchao.quantization.pt2e import allow_exported_model_train_eval
        from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e, prepare_pt2e
        from torchao.quantization.pt2e.quantizer import x86_inductor_quantizer as xiq
        model = copy_torch(art, "cpu")
        example = (ctx.data.x["calib"][:2].float(),)
        try:
            exported = torch.export.export(
                model, example, dynamic_shapes=({0: torch.export.Dim("batch", min=1, max=1 << 16)},)
            ).module()
            quantizer = xiq.X86InductorQuantizer().set_global(xiq.get_default_x86_inductor_quantization_config())
            prepared = prepare_pt2e(exported, quantizer)
            calib = ctx.data.x["calib"][: self.num_samples].float()
            with torch.no_grad():
                for i in range(0, len(calib), self.calib_batch):
                    prepared(calib[i:i + self.calib_batch])
            converted = convert_pt2e(prepared)
            allow_exported_model_train_eval(converted)  # runners call .eval()
        except Exception as e:  # export and the quantizer raise many types
            raise VariantFailed(f"torch PT2E quantization failed: {str(e).splitlines()[0][:300]}") from None
        return Artifact(id="", format="torch", model=converted, cpu_only=True,
                        runner={"compile": self.compile}), \
            {"quantizer": "torchao X86InductorQuantizer (PT2E)", "calibration_examples": len(calib),
             "calibration_split": "calib", "lowered_to_int8_kernels": self.compile}


@dataclass
class PruneUnstructured(Pass):
    """L1-magnitude unstructured pruning of Conv/Linear weights to ``sparsity``, made permanent
    (zeros in dense tensors). ``scope``: ``global`` ranks all weights together, ``layer``
    prunes each layer to the same sparsity. Dense kernels get no faster from it."""

    name = "prune_unstructured"
    sparsity: float = 0.5
    scope: str = "global"
    layers: list[str] = field(default_factory=lambda: list(_PRUNABLE))

    def __post_init__(self):
        if not 0 <= self.sparsity < 1:
            raise MlbenchError(f"prune_unstructured.sparsity must be in [0, 1), got {self.sparsity}")
        if self.scope not in ("global", "layer"):
            raise MlbenchError(f"prune_unstructured.scope must be global or layer, got {self.scope!r}")

    def apply(self, art: Artifact, ctx: PassContext):
        model = copy_torch(art)
        targets = [(m, "weight") for _, m in modules_of(model, self.layers)]
        if not targets:
            raise VariantFailed(f"prune_unstructured: no {self.layers} layers in the model")
        if self.scope == "global":
            prune.global_unstructured(targets, pruning_method=prune.L1Unstructured, amount=self.sparsity)
        else:
            for m, p in targets:
                prune.l1_unstructured(m, p, amount=self.sparsity)
        for m, p in targets:
            prune.remove(m, p)
        pruned = sum(int((m.weight == 0).sum()) for m, _ in targets)
        total = sum(m.weight.numel() for m, _ in targets)
        params, nonzero = count_params(model)
        return Artifact(id="", format="torch", model=model, facts=Facts(params, nonzero),
                        flags=["unstructured sparsity: dense kernels, so no speedup is expected"]), \
            {"weight_sparsity": pruned / total, "params": params, "nonzero_params": nonzero}


def _head(model: nn.Module, num_classes: int) -> nn.Module | None:
    heads = [m for m in model.modules() if isinstance(m, nn.Linear) and m.out_features == num_classes]
    return heads[-1] if heads else None


@dataclass
class PruneStructured(Pass):
    """Channel pruning with torch-pruning: removes whole channels (and the matching inputs
    of the next layers), so the model really gets smaller and faster.

    - ``ratio``: fraction of channels removed from each prunable layer (the classifier
      head's outputs are kept).
    - ``round_to``: channel counts rounded to a multiple of this.
    - ``importance``: ``l1`` or ``l2`` magnitude of each channel's weights.
    - ``global_pruning``: rank channels across layers instead of per layer.
    """

    name = "prune_structured"
    ratio: float = 0.5
    round_to: int = 8
    importance: str = "l1"
    global_pruning: bool = False

    def __post_init__(self):
        if not 0 <= self.ratio < 1:
            raise MlbenchError(f"prune_structured.ratio must be in [0, 1), got {self.ratio}")
        if self.importance not in ("l1", "l2"):
            raise MlbenchError(f"prune_structured.importance must be l1 or l2, got {self.importance!r}")
        if self.round_to < 1:
            raise MlbenchError("prune_structured.round_to must be >= 1")

    def compute_scale(self) -> float:
        """About 1 − ``ratio`` of the time per item. A layer loses ``ratio`` of its input and of
        its output channels, (1 − ratio)² of its multiply-adds, but at the sizes measured the time
        falls less: ResNet-18 (width 16, 32×32, 2 CPU threads) pruned by 0.5 trained in 0.46 and
        predicted in 0.38 of the unpruned model's time per item, where its FLOPs were 0.25."""
        return 1 - self.ratio

    def apply(self, art: Artifact, ctx: PassContext):
        import torch_pruning as tp  # on use: only structured pruning needs it
        model = copy_torch(art)
        example = ctx.data.x["test"][:2].float()
        head = _head(model, ctx.data.meta.num_classes)
        before = count_params(model)[0]
        channels_before = {n: m.out_channels for n, m in model.named_modules() if isinstance(m, nn.Conv2d)}
        pruner = tp.pruner.MetaPruner(
            model, example, importance=tp.importance.MagnitudeImportance(p=1 if self.importance == "l1" else 2),
            pruning_ratio=self.ratio, round_to=self.round_to, global_pruning=self.global_pruning,
            ignored_layers=[head] if head is not None else [])
        pruner.step()
        after = count_params(model)[0]
        channels_after = {n: m.out_channels for n, m in model.named_modules() if isinstance(m, nn.Conv2d)}
        return Artifact(id="", format="torch", model=model.eval(), facts=Facts(after, after)), \
            {"params_before": before, "params_after": after,
             "conv_channels": {n: [channels_before[n], channels_after.get(n)] for n in channels_before}}


@dataclass
class Finetune(Pass):
    """A short fine-tune with the baseline's training loop and optimizer, at ``lr``.
    ``keep_sparsity`` holds weights that are exactly zero at zero (after unstructured
    pruning), so sparsity survives the fine-tune."""

    name = "finetune"
    epochs: int = 5
    lr: float = 1e-3
    keep_sparsity: bool = True

    def __post_init__(self):
        if self.epochs < 1 or self.lr <= 0:
            raise MlbenchError("finetune needs epochs >= 1 and lr > 0")

    def apply(self, art: Artifact, ctx: PassContext):
        model = copy_torch(art, ctx.device)
        masks = {}
        if self.keep_sparsity:
            masks = {n: (p == 0) for n, p in model.named_parameters() if p.dim() > 1 and bool((p == 0).any())}
        params = dict(model.named_parameters())

        def keep_zeros(_: nn.Module) -> None:
            with torch.no_grad():
                for n, m in masks.items():
                    params[n].masked_fill_(m, 0.0)

        kw = dict(ctx.fit_kwargs)
        kw["optimizer"] = functools.partial(kw["optimizer"], lr=self.lr)
        kw["scheduler"] = None
        kw["patience"] = 0
        d = ctx.data
        res = fit(model, d.x["train"], d.y["train"], d.x["val"], d.y["val"], epochs=self.epochs,
                  post_step=keep_zeros if masks else None, seed=ctx.seed, desc="finetune", **kw)
        params_n, nonzero = count_params(model)
        return Artifact(id="", format="torch", model=model.cpu().eval(), facts=Facts(params_n, nonzero)), \
            {"epochs": self.epochs, "best_epoch": res.best_epoch, "best_val_loss": res.best_val_loss,
             "params": params_n, "nonzero_params": nonzero}

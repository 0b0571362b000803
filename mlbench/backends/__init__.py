"""Runners: the only thing evaluation, stress and timing code ever sees.

A runner has ``predict(x) -> logits`` (a float32 tensor, on ``output_device``)
and ``describe()`` (provider, threads, precision). Inputs may live anywhere;
the runner moves them where it computes.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch
from omegaconf import OmegaConf
from torch import nn

from mlbench.env import compiled_flags
from mlbench.errors import MlbenchError, first_line

log = logging.getLogger(__name__)


class Runner(Protocol):
    input_device: torch.device  # where inputs are best staged before predict()

    def predict(self, x: torch.Tensor) -> torch.Tensor: ...

    def describe(self) -> dict[str, Any]: ...

    def synchronize(self) -> None: ...

    def with_threads(self, threads: int) -> Runner:
        """The same model run with ``threads`` intra-op threads (for timing at a stated count)."""
        ...

    def serving_call(self, x: torch.Tensor) -> Callable[[], Any]:
        """One request as a server of this format would make it, input already prepared: what
        batch-1 latency times (torch: ``predict`` to a host tensor; onnxruntime: the session
        run on a NumPy array, without mlbench's tensor conversions)."""
        ...


class TorchRunner:
    """Eager PyTorch on CPU or CUDA, optionally compiled, optionally replaying a
    CUDA graph for batch-1 calls. ``dtype`` is the precision inputs are cast to
    (the model must already be in it); outputs come back as float32."""

    def __init__(self, model: nn.Module, device: torch.device, dtype: torch.dtype = torch.float32,
                 compile: bool = False, cuda_graphs: bool = False, channels_last: bool = False):
        self.device = self.input_device = device
        self.dtype = dtype
        self.channels_last = channels_last and device.type == "cuda"
        self.model = model.to(device)
        self.model.eval()  # not chained: exported graphs' eval() may return None
        if self.channels_last:
            self.model.to(memory_format=torch.channels_last)
        self.compiled = compile
        if compile:
            compiled_flags()
        self.fn = torch.compile(self.model) if compile else self.model
        self.cuda_graphs = cuda_graphs and device.type == "cuda"
        self._graph: tuple[torch.cuda.CUDAGraph, torch.Tensor, torch.Tensor] | None = None

    def _prep(self, x: torch.Tensor) -> torch.Tensor:
        x = x.to(self.device, self.dtype, non_blocking=True)
        if self.channels_last and x.dim() == 4:
            x = x.contiguous(memory_format=torch.channels_last)
        return x

    def _graph_call(self, x: torch.Tensor) -> torch.Tensor:
        if self._graph is None or self._graph[1].shape != x.shape:
            static_in = x.clone()
            stream = torch.cuda.Stream(self.device)
            stream.wait_stream(torch.cuda.current_stream(self.device))
            with torch.cuda.stream(stream), torch.inference_mode():
                for _ in range(3):
                    self.fn(static_in)
            torch.cuda.current_stream(self.device).wait_stream(stream)
            graph = torch.cuda.CUDAGraph()
            with torch.cuda.graph(graph), torch.inference_mode():
                static_out = self.fn(static_in)
            self._graph = (graph, static_in, static_out)
        graph, static_in, static_out = self._graph
        static_in.copy_(x)
        graph.replay()
        return static_out.clone()

    @torch.inference_mode()
    def predict(self, x: torch.Tensor) -> torch.Tensor:
        x = self._prep(x)
        if self.cuda_graphs and x.shape[0] == 1:
            return self._graph_call(x).float()
        return self.fn(x).float()

    def synchronize(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)

    def serving_call(self, x: torch.Tensor) -> Callable[[], Any]:
        predict = self.predict
        return lambda: predict(x).cpu()  # .cpu() waits for a GPU; on the CPU it is a no-op

    def with_threads(self, threads: int) -> TorchRunner:
        """torch's intra-op threads are process-wide: the caller sets them (``torch_threads``)."""
        return self

    def describe(self) -> dict[str, Any]:
        return {"backend": "torch", "provider": self.device.type,
                "device": torch.cuda.get_device_name(self.device) if self.device.type == "cuda" else "cpu",
                "precision": str(self.dtype).replace("torch.", ""), "threads": torch.get_num_threads(),
                "compile": self.compiled, "cuda_graphs": self.cuda_graphs}


_SHARED_ARENA: list[bool] = []  # whether the process-wide CPU arena is registered (once per process)


def _ort():
    import onnxruntime as ort  # heavy; only runs of ONNX artifacts need it
    if not _SHARED_ARENA:
        _SHARED_ARENA.append(_share_cpu_arena(ort))
    return ort


def _share_cpu_arena(ort: Any) -> bool:
    """One CPU memory arena for every session of the process (``session.use_env_allocators``).

    Each onnxruntime session otherwise keeps its own arena, grown to its largest batch and never
    returned: about 70 MB per session for a ResNet-18 (width 16) at batch 256 on 32×32 inputs, and
    a run holds a session per ONNX variant and thread count. Shared, the arena is one batch's
    working set for the whole process; outputs and speed are the same (the same BFC allocator)."""
    try:
        info = ort.OrtMemoryInfo("Cpu", ort.OrtAllocatorType.ORT_ARENA_ALLOCATOR, 0, ort.OrtMemType.DEFAULT)
        ort.create_and_register_allocator(info, ort.OrtArenaCfg(0, -1, -1, -1))  # onnxruntime's defaults
        return True
    except Exception as e:  # noqa: BLE001 - an old onnxruntime: each session keeps its own arena
        log.debug("shared onnxruntime CPU arena not registered: %s", first_line(e))
        return False


class OrtRunner:
    """onnxruntime InferenceSession. Providers are tried in order; a missing one
    is a recorded warning, or an error when ``strict``."""

    input_device = torch.device("cpu")

    def __init__(self, path: str | Path, providers: list[str] | tuple[str, ...] = ("CPUExecutionProvider",),
                 threads: int = 0, strict: bool = False, graph_optimization: str = "all",
                 spinning: bool = False):
        ort = _ort()
        self.path = Path(path)
        if not self.path.is_file():
            raise MlbenchError(f"ONNX model not found: {self.path}")
        available = ort.get_available_providers()
        self.requested = list(providers)
        missing = [p for p in self.requested if p not in available]
        self.warnings: list[str] = []
        if missing:
            msg = f"execution provider(s) {missing} not available (have {available})"
            if strict:
                raise MlbenchError(msg + "; backend.strict=true forbids a fallback")
            self.warnings.append(msg + "; falling back")
            log.warning(msg + "; falling back")
        use = [p for p in self.requested if p in available] or ["CPUExecutionProvider"]
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = threads if threads > 0 else torch.get_num_threads()
        opts.inter_op_num_threads = 1
        opts.log_severity_level = 3
        if _SHARED_ARENA[0]:
            opts.add_session_config_entry("session.use_env_allocators", "1")
        # idle worker threads sleep instead of busy-waiting (see OrtBackendConf.spinning)
        opts.add_session_config_entry("session.intra_op.allow_spinning", "1" if spinning else "0")
        opts.add_session_config_entry("session.inter_op.allow_spinning", "1" if spinning else "0")
        levels = {"disable": ort.GraphOptimizationLevel.ORT_DISABLE_ALL,
                  "basic": ort.GraphOptimizationLevel.ORT_ENABLE_BASIC,
                  "extended": ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED,
                  "all": ort.GraphOptimizationLevel.ORT_ENABLE_ALL}
        if graph_optimization not in levels:
            raise MlbenchError(f"graph_optimization must be one of {sorted(levels)}")
        opts.graph_optimization_level = levels[graph_optimization]
        self.threads, self.graph_optimization = opts.intra_op_num_threads, graph_optimization
        try:
            self.session = ort.InferenceSession(str(self.path), sess_options=opts, providers=use)
        except Exception as e:  # onnxruntime raises its own exception types
            first = first_line(e)
            raise MlbenchError(f"cannot load ONNX model {self.path}: {first}") from None
        # the C++ session's run, called directly: InferenceSession.run re-validates the feed and
        # rebuilds the output list in Python on every call (~10 µs, half a small model's batch-1
        # latency); the feed here is always the model's one input, so nothing is lost
        self._outputs = [self.session.get_outputs()[0].name]
        raw = getattr(self.session, "_sess", None)
        self._run = raw.run if raw is not None and hasattr(raw, "run") else self.session.run
        self._options = {"providers": self.requested, "strict": strict, "graph_optimization": graph_optimization,
                         "spinning": spinning}
        inp = self.session.get_inputs()[0]
        self.input_name = inp.name
        self.input_dtype = np.float16 if "float16" in inp.type else np.float32

    def predict(self, x: torch.Tensor) -> torch.Tensor:
        # kept lean: at batch 1 a small model runs in ~20 µs, so every conversion shows
        try:
            arr = x.numpy()
        except (RuntimeError, TypeError):  # on a GPU, or part of an autograd graph
            arr = x.detach().cpu().numpy()
        if arr.dtype != self.input_dtype:
            arr = arr.astype(self.input_dtype)
        out = self._run(self._outputs, {self.input_name: arr}, None)[0]
        return torch.from_numpy(out if out.dtype == np.float32 else out.astype(np.float32))

    def synchronize(self) -> None:
        return None

    def serving_call(self, x: torch.Tensor) -> Callable[[], Any]:
        run, outputs, feed = self._run, self._outputs, {self.input_name: x.detach().cpu().numpy().astype(self.input_dtype)}
        return lambda: run(outputs, feed, None)

    def with_threads(self, threads: int) -> OrtRunner:
        """A second session on the same file with ``threads`` intra-op threads (an onnxruntime
        session fixes its thread pool when it is created); this one if the count matches."""
        if threads <= 0 or threads == self.threads:
            return self
        return OrtRunner(self.path, threads=threads, **self._options)

    def describe(self) -> dict[str, Any]:
        return {"backend": "onnxruntime", "provider": self.session.get_providers()[0],
                "providers": self.session.get_providers(), "requested": self.requested,
                "threads": self.threads, "graph_optimization": self.graph_optimization,
                "spinning": self._options["spinning"], "warnings": self.warnings}


def runner_for(art: Any, backend: Any, device: torch.device, overrides: dict[str, Any] | None = None,
               threads: int | None = None) -> Runner:
    """The runner for an artifact, from its format (``art.kind.runner``): the one place that
    picks a runner.

    ``backend`` is the run's ``backend`` config (its ``torch`` / ``onnxruntime`` option tables,
    defaults in :class:`mlbench.schema.BackendConf`); the artifact's own runner options (asked
    for by a pass) and the variant's ``runner`` overrides apply on top, in that order. A torch
    artifact that runs only on the CPU gets the CPU whatever ``device`` says."""
    kind = art.kind  # one error line for a format that has no registered class
    table = kind.options_table
    opts = {**(OmegaConf.to_container(backend[table], resolve=True) if table else {}), **art.runner,
            **(overrides or {})}
    if threads is None:  # "auto": the run's threads, which the run has set process-wide
        threads = backend.threads if isinstance(backend.threads, int) else torch.get_num_threads()
    try:
        return kind.runner(art, device, threads, opts)
    except TypeError as e:  # an unknown runner option
        raise MlbenchError(f"runner options {sorted(opts)}: {e}") from None


__all__ = ["Runner", "TorchRunner", "OrtRunner", "runner_for"]

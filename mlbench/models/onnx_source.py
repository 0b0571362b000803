"""``model=onnx``: an ONNX file and no torch source — a graph exported by any tool, including
scikit-learn pipelines converted with skl2onnx.

The graph must have one input of floating type; its shape must fit the data's. Its output is
found and brought to the one form every runner of mlbench reads (one float tensor of shape
(batch, classes) of logits):

- a ``ZipMap`` output (skl2onnx's default for classifiers: a sequence of {class: probability}
  maps) is cut off and the probability tensor that feeds it becomes the output; its class
  labels are the model's class names;
- probabilities (the ``output`` setting, or ``auto``: a Softmax/ZipMap source or rows of
  non-negative values summing to 1 on the test inputs) become log-probabilities by a ``Max``
  with a tiny floor and a ``Log`` appended to the graph: ``softmax(log p) = p``, so every
  probability, metric and calibrator sees the model's own numbers;
- other outputs (a predicted-label tensor next to the probabilities) are dropped.

The rewritten graph is the baseline artifact (``models/baseline/model.onnx``); the original
file is left untouched and recorded with its sha256. Everything that runs on an ONNX artifact
runs on it (onnxruntime quantization, graph optimization, calibration, corruptions, weight
faults on its initializers, data checks, monitoring, export); what needs torch source is
reported as not applicable with the reason.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from mlbench.choices import OutputKind, choose
from mlbench.errors import MlbenchError, first_line
from mlbench.models.checkpoints import check_head
from mlbench.train.cache import file_sha256

FLOAT_TYPES = {1: "float32"}  # onnx.TensorProto elem types mlbench feeds (its inputs are float32)
PROBABILITY_SOURCES = ("Softmax", "ZipMap", "LinearClassifier", "TreeEnsembleClassifier", "SVMClassifier")


def _load(path: Path) -> Any:
    import onnx
    if not path.is_file():
        raise MlbenchError(f"model.path: {path} does not exist")
    try:
        model = onnx.load(str(path))
        onnx.checker.check_model(model)
    except Exception as e:  # DecodeError, ValidationError, OSError ...
        raise MlbenchError(f"model.path: {path} is not a valid ONNX model ({type(e).__name__}: {first_line(e)})") from None
    return model


def graph_inputs(model: Any) -> list[Any]:
    """The graph's real inputs (initializers listed as inputs by older exporters left out)."""
    inits = {i.name for i in model.graph.initializer}
    return [i for i in model.graph.input if i.name not in inits]


class OnnxModel:
    """``model=onnx``: ``path`` to an ONNX file; ``output``: ``auto``, ``logits`` or
    ``probabilities``; ``class_names``: else the ZipMap's labels, else the data's."""

    source = "onnx"
    pretrained = True
    onnx_only = True

    def __init__(self, path: str, output: str = "auto", class_names: list[str] | None = None):
        self.path = Path(path).expanduser()
        self.output = str(choose(OutputKind, output, "model.output"))
        self.class_names = list(class_names) if class_names else None
        model = _load(self.path)
        inputs = graph_inputs(model)
        if len(inputs) != 1:
            raise MlbenchError(f"model.path: {self.path.name} has {len(inputs)} inputs "
                               f"({', '.join(i.name for i in inputs)}); mlbench evaluates a graph with one input")
        elem = inputs[0].type.tensor_type.elem_type
        if elem not in FLOAT_TYPES:
            import onnx
            raise MlbenchError(f"model.path: input {inputs[0].name!r} is of type "
                               f"{onnx.TensorProto.DataType.Name(elem).lower()}; mlbench feeds float32 features or "
                               "images (convert the model with float32 inputs)")
        self.record: dict[str, Any] = {}

    def __call__(self, input_shape: tuple[int, ...], num_classes: int) -> Any:
        raise MlbenchError("model=onnx has no torch module; this step needs torch source")

    # -- the baseline artifact -------------------------------------------------------
    def prepare(self, workdir: Path, x: np.ndarray, num_classes: int) -> tuple[Path, dict[str, Any]]:
        """Write the normalized graph (one logits output) to ``workdir/model.onnx``, checked on
        ``x`` (a few data items); returns its path and the record of what was done."""
        import onnx
        from onnx import TensorProto, helper

        model = _load(self.path)
        g = model.graph
        inp = graph_inputs(model)[0]
        dims = [d.dim_value if d.dim_value > 0 else None for d in inp.type.tensor_type.shape.dim]
        want = [None, *x.shape[1:]]
        if len(dims) != len(want) or any(a is not None and b is not None and a != b for a, b in zip(dims[1:], want[1:])):
            raise MlbenchError(f"model.path: input {inp.name!r} has shape {['N' if d is None else d for d in dims]}; "
                               f"the data gives (N, {', '.join(map(str, x.shape[1:]))})")
        producers = {o: n for n in g.node for o in n.output}
        zipmap = next((n for n in g.node if n.op_type == "ZipMap"), None)
        labels = None
        if zipmap is not None:  # take the probability tensor that feeds it
            source_name = zipmap.input[0]
            attrs = {a.name: a for a in zipmap.attribute}
            if "classlabels_strings" in attrs:
                labels = [s.decode() for s in attrs["classlabels_strings"].strings]
            elif "classlabels_int64s" in attrs:
                labels = [str(i) for i in attrs["classlabels_int64s"].ints]
            g.node.remove(zipmap)
            kind_hint = "probabilities"
        else:
            floats = [o for o in g.output if o.type.tensor_type.elem_type in FLOAT_TYPES
                      and len(o.type.tensor_type.shape.dim) == 2]
            if not floats:
                raise MlbenchError(f"model.path: no output of shape (batch, classes) among "
                                   f"{[o.name for o in g.output]}")
            source_name = floats[0].name
            node = producers.get(source_name)
            kind_hint = "probabilities" if node is not None and node.op_type in PROBABILITY_SOURCES else None
        del g.output[:]
        g.output.append(helper.make_tensor_value_info(source_name, TensorProto.FLOAT, None))
        raw = self._run(model, inp.name, x)
        check_head(raw.shape[1] if raw.ndim == 2 else 0, num_classes)
        looks_like_p = bool((raw >= 0).all() and np.allclose(raw.sum(1), 1.0, atol=1e-4))
        kind = self.output if self.output != "auto" else (kind_hint or ("probabilities" if looks_like_p else "logits"))
        how = "config" if self.output != "auto" else ("graph" if kind_hint else "values on the data")
        if kind == "probabilities":
            if not looks_like_p:
                raise MlbenchError("model.output=probabilities but the outputs are not rows of non-negative values "
                                   "summing to 1 (set model.output=logits)")
            floor = helper.make_tensor("mlbench_p_floor", TensorProto.FLOAT, [], [1e-30])
            g.initializer.append(floor)
            g.node.append(helper.make_node("Max", [source_name, "mlbench_p_floor"], ["mlbench_p_floored"]))
            g.node.append(helper.make_node("Log", ["mlbench_p_floored"], ["logits"]))
            del g.output[:]
            g.output.append(helper.make_tensor_value_info("logits", TensorProto.FLOAT, None))
        out_path = workdir / "model.onnx"
        workdir.mkdir(parents=True, exist_ok=True)
        onnx.save(model, str(out_path))
        names, names_from = (self.class_names, "config") if self.class_names else \
            (labels, "the graph's ZipMap labels") if labels else (None, None)
        self.record = {
            "source": self.source, "path": str(self.path), "sha256": file_sha256(self.path), "format": "onnx",
            "opset": {o.domain or "ai.onnx": o.version for o in model.opset_import},
            "producer": f"{model.producer_name} {model.producer_version}".strip(),
            "input": {"name": inp.name, "shape": ["N" if d is None else d for d in dims],
                      "dtype": FLOAT_TYPES[inp.type.tensor_type.elem_type]},
            "output": {"tensor": source_name, "kind": kind, "kind_from": how, "zipmap_removed": zipmap is not None,
                       "as_logits": "log(max(p, 1e-30))" if kind == "probabilities" else "as given"},
            "class_names": names, "class_names_from": names_from, "weights_only": True,
            "rewritten": "models/baseline/model.onnx"}
        return out_path, self.record

    def baseline(self, data: Any, workdir: Path) -> Any:
        """The baseline artifact: the normalized graph, checked on up to 64 test items."""
        import onnx
        from onnx import numpy_helper

        from mlbench.compress import Artifact, Facts
        path, _ = self.prepare(workdir, data.x["test"][:64].numpy(), data.meta.num_classes)
        graph = onnx.load(str(path)).graph
        weights = [numpy_helper.to_array(t) for t in graph.initializer if t.name != "mlbench_p_floor"]
        # converted classical models (skl2onnx) keep coefficients in node attributes
        weights += [np.asarray(a.floats) for n in graph.node for a in n.attribute if len(a.floats) > 1]
        floats = [w for w in weights if w.dtype.kind == "f"]
        return Artifact(id=f"onnx-{self.record['sha256'][:12]}", format="onnx", path=path, files=[path],
                        facts=Facts(sum(w.size for w in floats), sum(int(np.count_nonzero(w)) for w in floats)))

    @staticmethod
    def _run(model: Any, input_name: str, x: np.ndarray) -> np.ndarray:
        import onnxruntime as ort
        try:
            sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
            return np.asarray(sess.run(None, {input_name: x.astype(np.float32)})[0])
        except Exception as e:  # onnxruntime raises its own exception types
            raise MlbenchError(f"model.path: onnxruntime cannot run the graph on the data "
                               f"({type(e).__name__}: {first_line(e)})") from None

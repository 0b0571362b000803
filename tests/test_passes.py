"""Every pass on a tiny trained model: shapes, parity, sparsity, channels, metadata, lineage."""

from __future__ import annotations

import functools
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from torch import nn

from mlbench.backends import OrtRunner, TorchRunner
from mlbench.compress import (
    Artifact,
    Finetune,
    Half,
    OnnxExport,
    OrtOptimize,
    OrtQuantizeDynamic,
    OrtQuantizeStatic,
    PassContext,
    PruneStructured,
    PruneUnstructured,
    TorchQuantizeDynamic,
    TorchQuantizeStatic,
    onnx_files,
)
from mlbench.data import Digits
from mlbench.errors import MlbenchError, VariantFailed
from mlbench.evaluate import evaluate
from mlbench.models import CNN, ResNet, count_params
from mlbench.train import fit


@pytest.fixture(scope="module")
def trained():
    d = Digits().load()
    torch.manual_seed(0)
    m = CNN(d.meta.input_shape, 10, channels=(16, 32), hidden=64)
    opt = functools.partial(torch.optim.AdamW, lr=3e-3)
    fit(m, d.x["train"], d.y["train"], d.x["val"], d.y["val"], epochs=8, batch_size=128, optimizer=opt)
    return d, m


@pytest.fixture
def ctx(trained, tmp_path):
    d, _ = trained
    return PassContext(data=d, device=torch.device("cpu"), workdir=tmp_path, seed=0,
                       fit_kwargs={"batch_size": 128, "optimizer": functools.partial(torch.optim.AdamW, lr=1e-3)})


@pytest.fixture
def base(trained):
    return Artifact(id="base0", format="torch", model=trained[1])


def acc(runner, d):
    return evaluate(runner, d.x["test"], d.y["test"]).metrics["accuracy"]


def test_onnx_export_parity_metadata_and_external_data(ctx, base, trained):
    art = OnnxExport()(base, ctx)
    assert art.format == "onnx" and art.recipe == ["onnx_export"] and art.parent == "base0"
    par = art.facts.parity
    assert par.reference == "torch" and par.max_abs_diff < 1e-4 and par.top1_agreement == 1.0
    assert art.records[-1]["info"]["parity"] == par.as_dict()  # recorded in the lineage too
    assert len(art.files) == 2 and art.files[1].name.endswith(".data")  # external weights
    # no exporter debug metadata: the file's size must not depend on where torch is installed
    graph = onnx.load(str(art.path), load_external_data=False).graph
    assert not any(n.metadata_props for n in graph.node)
    assert b"site-packages" not in art.path.read_bytes() and b"stack_trace" not in art.path.read_bytes()
    assert sum(f.stat().st_size for f in art.files) > 4 * count_params(trained[1])[0]
    onnx.checker.check_model(str(art.path), full_check=True)
    # dynamic batch axis
    s = ort.InferenceSession(str(art.path))
    for b in (1, 7):
        assert s.run(None, {"input": np.zeros((b, 1, 8, 8), np.float32)})[0].shape == (b, 10)
    assert acc(OrtRunner(art.path), trained[0]) == acc(TorchRunner(trained[1], torch.device("cpu")), trained[0])


def test_lineage_ids_are_stable_and_parameter_sensitive(ctx, base):
    a = PruneUnstructured(sparsity=0.3)(base, ctx)
    b = PruneUnstructured(sparsity=0.3)(base, ctx)
    c = PruneUnstructured(sparsity=0.4)(base, ctx)
    assert a.id == b.id != c.id
    assert a.records[-1]["params"] == {"sparsity": 0.3, "scope": "global", "layers": ["Conv1d", "Conv2d", "Linear"]}


def test_a_deep_export_whose_predictions_all_agree_is_kept_with_its_worst_logit(ctx, trained):
    # ResNet-18 with logits in the thousands: float32 rounding of the exported graph moves them
    # by more than the old absolute 1e-4, while every prediction agrees
    d, _ = trained
    torch.manual_seed(0)
    net = ResNet(d.meta.input_shape, 10, depth=18, width=8).eval()
    with torch.no_grad():
        net.head.weight.mul_(1e6)
    loud = OnnxExport()(Artifact(id="r18", format="torch", model=net), ctx)
    par = loud.facts.parity
    assert par.max_abs_diff > 1e-4 and par.top1_agreement == 1.0
    assert par.worst_excess <= 1 and not loud.flags  # relative to |b| the drift is float noise
    w = par.worst
    assert w["rel_diff"] == pytest.approx(abs(w["candidate"] - w["reference"]) / abs(w["reference"]))
    strict = OnnxExport(parity_atol=1e-6, parity_rtol=0.0)(Artifact(id="r18", format="torch", model=net), ctx)
    assert strict.facts.parity.worst_excess > 1 and "every prediction agrees" in strict.flags[0]


def test_an_exported_graph_that_flips_predictions_fails_the_variant(ctx, trained):
    class Planted(nn.Module):  # the traced graph negates the logits: torch and ONNX disagree
        def __init__(self, inner):
            super().__init__()
            self.inner = inner

        def forward(self, x):
            out = self.inner(x)
            return -out if torch.compiler.is_compiling() else out

    with pytest.raises(VariantFailed, match="top-1 agreement with torch"):
        OnnxExport()(Artifact(id="planted", format="torch", model=Planted(trained[1])), ctx)


def test_export_of_unsupported_module_names_it(ctx):
    class Weird(nn.Module):
        def forward(self, x):
            return torch.linalg.svd(x.flatten(1)[:, :10].reshape(-1, 2, 5)).S.repeat(1, 5)

    with pytest.raises(VariantFailed, match="ONNX export of Weird failed"):
        OnnxExport()(Artifact(id="w", format="torch", model=Weird()), ctx)


@pytest.mark.parametrize("method", ["MinMax", "Entropy", "Percentile"])
def test_ort_static_quantization(ctx, base, trained, method):
    art = OrtQuantizeStatic(calibrate_method=method, num_samples=128)(OnnxExport()(base, ctx), ctx)
    info = art.records[-1]["info"]
    assert info["quantizer_args"]["calibrate_method"] == method
    assert info["quantizer_args"]["calibration_split"] == "calib" and info["quantizer_args"]["calibration_examples"] == 128
    model = onnx.load(str(art.path))
    ops = {n.op_type for n in model.graph.node}
    assert "QuantizeLinear" in ops and "DequantizeLinear" in ops  # QDQ format
    int8 = [i for i in model.graph.initializer if i.data_type == onnx.TensorProto.INT8]
    assert int8, "weights should be stored as int8"
    fresh = ort.InferenceSession(str(art.path), providers=["CPUExecutionProvider"])  # loads outside mlbench
    assert fresh.run(None, {"input": trained[0].x["test"][:4].numpy()})[0].shape == (4, 10)
    assert acc(OrtRunner(art.path), trained[0]) > 0.9


def test_ort_dynamic_quantization_and_optimize(ctx, base, trained):
    exported = OnnxExport()(base, ctx)
    q = OrtQuantizeDynamic()(exported, ctx)
    assert q.records[-1]["info"]["quantizer_args"] == {"weight_type": "QInt8", "per_channel": False,
                                                       "reduce_range": False, "preprocessed": True}
    assert sum(f.stat().st_size for f in q.files) < sum(f.stat().st_size for f in exported.files)
    opt = OrtOptimize(level="extended")(exported, ctx)
    assert opt.facts.parity.reference == "parent" and opt.facts.parity.max_abs_diff < 1e-4
    assert acc(OrtRunner(q.path), trained[0]) > 0.9


def test_onnx_pass_rejects_torch_input_and_bad_enums(ctx, base):
    with pytest.raises(VariantFailed, match="needs a onnx"):
        OrtQuantizeDynamic()(base, ctx)
    with pytest.raises(MlbenchError, match="calibrate_method"):
        OrtQuantizeStatic(calibrate_method="Magic")


def test_unstructured_pruning_exact_sparsity_survives_finetune(ctx, base):
    art = PruneUnstructured(sparsity=0.5)(base, ctx)
    ws = [m.weight for m in art.model.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
    zeros, total = sum(int((w == 0).sum()) for w in ws), sum(w.numel() for w in ws)
    assert zeros == round(0.5 * total)
    ft = Finetune(epochs=2)(art, ctx)
    ws2 = [m.weight for m in ft.model.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
    assert sum(int((w == 0).sum()) for w in ws2) >= zeros
    assert ft.records[-1]["info"]["nonzero_params"] <= count_params(base.model)[0] - zeros
    assert all(torch.equal(p, q) for p, q in zip(base.model.parameters(), base.model.parameters()))


def test_layer_scope_prunes_each_layer(ctx, base):
    art = PruneUnstructured(sparsity=0.25, scope="layer")(base, ctx)
    for m in art.model.modules():
        if isinstance(m, (nn.Conv2d, nn.Linear)):
            assert int((m.weight == 0).sum()) == round(0.25 * m.weight.numel())


@pytest.mark.parametrize("bad", [1.0, -0.1, 1.5])
def test_sparsity_outside_range_is_rejected(bad):
    with pytest.raises(MlbenchError):
        PruneUnstructured(sparsity=bad)
    with pytest.raises(MlbenchError):
        PruneStructured(ratio=bad)


def test_structured_pruning_removes_channels(ctx, base, trained):
    art = PruneStructured(ratio=0.5, round_to=8)(base, ctx)
    convs = [m for m in art.model.modules() if isinstance(m, nn.Conv2d)]
    assert [c.out_channels for c in convs] == [8, 8, 16, 16]
    assert all(c.out_channels % 8 == 0 for c in convs)
    assert count_params(art.model)[0] < 0.4 * count_params(base.model)[0]
    assert art.model(trained[0].x["test"][:3]).shape == (3, 10)
    head = [m for m in art.model.modules() if isinstance(m, nn.Linear)][-1]
    assert head.out_features == 10


def test_torch_quantize_dynamic(ctx, base, trained):
    art = TorchQuantizeDynamic()(base, ctx)
    assert art.cpu_only and art.records[-1]["info"]["quantized_modules"] == 2
    assert acc(TorchRunner(art.model, torch.device("cpu")), trained[0]) > 0.9


def test_torch_quantize_static_pt2e(ctx, base, trained):
    art = TorchQuantizeStatic(num_samples=64)(base, ctx)
    assert art.records[-1]["info"]["calibration_split"] == "calib"
    targets = {str(n.target) for n in art.model.graph.nodes if n.op == "call_function"}
    assert any("quantize_per" in t for t in targets)
    assert acc(TorchRunner(art.model, torch.device("cpu")), trained[0]) > 0.9


def test_half_bf16(ctx, base, trained):
    art = Half(dtype="bf16")(base, ctx)
    assert next(art.model.parameters()).dtype == torch.bfloat16
    r = TorchRunner(art.model, torch.device("cpu"), art.dtype)
    assert r.predict(trained[0].x["test"][:2]).dtype == torch.float32
    with pytest.raises(VariantFailed, match="CUDA"):
        Half(dtype="fp16")(base, ctx)


def test_corrupt_onnx_file_is_a_clear_error(ctx, base, tmp_path):
    art = OnnxExport()(base, ctx)
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(art.path.read_bytes()[:100])
    with pytest.raises(MlbenchError, match="cannot load ONNX model"):
        OrtRunner(bad)
    with pytest.raises(MlbenchError, match="not found"):
        OrtRunner(tmp_path / "missing.onnx")


def test_size_accounting_includes_external_data(ctx, base):
    art = OnnxExport(external_data=True)(base, ctx)
    files = onnx_files(art.path)
    assert files[0].stat().st_size < files[1].stat().st_size  # weights live in the .data file


def test_a_failed_symbolic_shape_inference_leaves_no_file_in_the_working_directory(tmp_path, monkeypatch):
    """onnxruntime saves its half-inferred graph as sym_shape_infer_temp.onnx in the working
    directory before it raises; the retry without symbolic inference removes it (a file of that
    name that was there before is left alone)."""
    import onnxruntime.quantization.shape_inference as si

    from mlbench.compress.ort_passes import _preprocess
    calls = []

    def fake(src, dst, skip_symbolic_shape=False):
        calls.append(skip_symbolic_shape)
        if not skip_symbolic_shape:
            Path("sym_shape_infer_temp.onnx").write_bytes(b"half-inferred")
            raise RuntimeError("Incomplete symbolic shape inference")
        Path(dst).write_bytes(b"done")

    monkeypatch.setattr(si, "quant_pre_process", fake)
    monkeypatch.chdir(tmp_path)
    assert _preprocess(tmp_path / "in.onnx", tmp_path / "out.onnx").read_bytes() == b"done"
    assert calls == [False, True] and not (tmp_path / "sym_shape_infer_temp.onnx").exists()
    (tmp_path / "sym_shape_infer_temp.onnx").write_bytes(b"the user's own")
    _preprocess(tmp_path / "in.onnx", tmp_path / "out.onnx")
    assert (tmp_path / "sym_shape_infer_temp.onnx").exists()  # there before: not ours to delete


def test_onnx_sessions_share_one_cpu_arena(tmp_path):
    """Each further session of a conv net adds little memory (the process-wide arena is reused)
    where sessions with their own arenas each keep one batch's working set; outputs identical."""
    from mlbench.models import ResNet

    def rss_mb() -> float:
        with open("/proc/self/status") as f:
            return next(int(line.split()[1]) for line in f if line.startswith("VmRSS")) / 1024

    model = ResNet((3, 32, 32), 10, depth=10, width=16).eval()
    path = tmp_path / "r.onnx"
    torch.onnx.export(model, torch.rand(1, 3, 32, 32), str(path), dynamo=False, input_names=["x"],
                      dynamic_axes={"x": {0: "b"}})
    x = torch.rand(256, 3, 32, 32)
    own, shared, keep = [], [], []
    for _ in range(3):
        r0 = rss_mb()
        sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])  # its own arena
        want = sess.run(None, {"x": x.numpy()})[0]
        own.append(rss_mb() - r0)
        r0 = rss_mb()
        runner = OrtRunner(path, threads=1)
        got = runner.predict(x).numpy()
        shared.append(rss_mb() - r0)
        keep += [sess, runner]
        np.testing.assert_array_equal(got, want)
    assert sum(shared[1:]) < 0.5 * sum(own[1:]), (own, shared)

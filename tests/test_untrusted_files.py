"""Readers of files that may come from anywhere: any bytes give a valid result or one clean
MlbenchError, never another exception (property-based, with hypothesis)."""

from __future__ import annotations

import io
import json
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mlbench.data.embedded import read_npz_dataset
from mlbench.errors import MlbenchError
from mlbench.results import read_predictions, read_summary
from mlbench.train.cache import BaselineCache, save_weights

pytestmark = pytest.mark.reliability
SETTINGS = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])

json_values = st.recursive(st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
                           lambda c: st.lists(c, max_size=4) | st.dictionaries(st.text(max_size=8), c, max_size=4),
                           max_leaves=20)


def _npz_bytes(arrays: dict) -> bytes:
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    return buf.getvalue()


arrays = st.fixed_dictionaries({}, optional={
    k: st.one_of(
        st.builds(lambda n, d: np.random.default_rng(n).normal(size=(n, d)), st.integers(0, 30), st.integers(1, 4)),
        st.builds(lambda n: np.arange(n) % 3, st.integers(0, 30)),
        st.builds(lambda n: np.array(["a"] * n), st.integers(0, 5)),
        st.builds(lambda n: np.full((n, 3), np.nan), st.integers(0, 5)),
        st.builds(np.array, st.lists(st.floats(allow_nan=True), max_size=10)),
    ) for k in ("x", "y", "group", "probs", "labels", "index")})


def _mutate(blob: bytes, cut: int, flip: int) -> bytes:
    if not blob:
        return blob
    b = bytearray(blob[: max(1, len(blob) - cut)])
    b[flip % len(b)] ^= 0xFF
    return bytes(b)


def _write(tmp: Path, name: str, blob: bytes) -> Path:
    p = tmp / name
    p.write_bytes(blob)
    return p


@SETTINGS
@given(blob=st.binary(max_size=2048) | json_values.map(lambda v: json.dumps(v).encode()))
def test_summary_reader_any_bytes(tmp_path, blob):
    try:
        s = read_summary(_write(tmp_path, "summary.json", blob))
    except MlbenchError as e:
        assert "\n" not in str(e)
    else:
        assert isinstance(s, dict) and "variants" in s


def test_summary_reader_accepts_a_real_summary(smoke_run):
    run_dir, s, _ = smoke_run
    assert read_summary(run_dir / "summary.json") == s


@SETTINGS
@given(a=arrays, cut=st.integers(0, 64), flip=st.integers(0, 10_000), mutate=st.booleans())
def test_npz_readers_any_content(tmp_path, a, cut, flip, mutate):
    blob = _npz_bytes(a)
    if mutate:
        blob = _mutate(blob, cut, flip)
    p = _write(tmp_path, "d.npz", blob)
    for reader in (read_npz_dataset, read_predictions):
        try:
            out = reader(p)
        except MlbenchError as e:
            assert "\n" not in str(e)
        else:
            assert out is not None


def _patch_headers(blob: bytes, local: tuple[int, int] | None, central: tuple[int, int] | None, value: int,
                   mode: str = "set") -> bytes:
    """Set (or OR in) a 2-byte field at an offset of every local (``PK\\3\\4``) and central
    (``PK\\1\\2``) zip header: (offset, width) per kind, None to leave that kind alone."""
    import struct
    b = bytearray(blob)
    for sig, field in ((b"PK\x03\x04", local), (b"PK\x01\x02", central)):
        j = b.find(sig)
        while field is not None and j >= 0:
            at = j + field[0]
            old = struct.unpack("<H", b[at:at + 2])[0]
            b[at:at + 2] = struct.pack("<H", old | value if mode == "or" else value)
            j = b.find(sig, j + 4)
    return bytes(b)


# zip features the standard library refuses, each found once by the property test above as an
# exception other than MlbenchError: (local header field, central header field, value, mode)
UNSUPPORTED_ZIPS = {
    "compression method 99": ((8, 2), (10, 2), 99, "set"),       # NotImplementedError
    "compressed patched data": ((6, 2), (8, 2), 0x20, "or"),     # NotImplementedError (flag bit 5)
    "encrypted members": ((6, 2), (8, 2), 0x1, "or"),            # RuntimeError: password required
    "zip version 21.0": (None, (6, 2), 210, "set"),              # NotImplementedError
    "bzip2 on stored bytes": ((8, 2), (10, 2), 12, "set"),       # OSError: invalid data stream
    "deflate on stored bytes": ((8, 2), (10, 2), 8, "set"),      # BadZipFile: bad CRC-32
}


@pytest.mark.parametrize("case", list(UNSUPPORTED_ZIPS))
def test_npz_readers_name_an_archive_they_cannot_read_in_one_line(tmp_path, case):
    local, central, value, mode = UNSUPPORTED_ZIPS[case]
    good = _npz_bytes({"x": np.ones((4, 2)), "y": np.arange(4) % 2, "probs": np.full((4, 2), 0.5),
                       "labels": np.arange(4) % 2, "index": np.arange(4)})
    p = _write(tmp_path, "d.npz", _patch_headers(good, local, central, value, mode))
    for reader in (read_npz_dataset, read_predictions):
        with pytest.raises(MlbenchError) as e:
            reader(p)
        assert "\n" not in str(e.value) and str(p) in str(e.value), (reader.__name__, str(e.value))
    assert read_predictions(_write(tmp_path, "ok.npz", good))["probs"].shape == (4, 2)  # the untouched file reads


@SETTINGS
@given(blob=st.binary(max_size=512) | json_values.map(lambda v: json.dumps(v).encode()))
def test_cache_meta_any_bytes_is_a_miss_or_a_hit_never_a_crash(tmp_path, blob):
    cache = BaselineCache(tmp_path / "cache")
    entry = cache.entry("k")
    entry.mkdir(parents=True, exist_ok=True)
    save_weights(torch.nn.Linear(2, 2), entry / "model.safetensors")
    (entry / "meta.json").write_bytes(blob)
    assert cache._read("k", torch.nn.Linear(2, 2)) is None  # no valid checksum: a miss, entry removed
    assert not entry.exists()


def test_zip_with_directory_traversal_names_is_just_unreadable(tmp_path):
    p = tmp_path / "evil.npz"
    with zipfile.ZipFile(p, "w") as z:
        z.writestr("../x.npy", b"\x93NUMPY")
    with pytest.raises(MlbenchError):
        read_npz_dataset(p)

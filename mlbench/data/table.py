"""``data=table``: a CSV or Parquet file (pandas; Parquet through pyarrow), one row per item.

Columns: ``target`` (the label; its sorted distinct values are the classes), ``features``
(default: every other column that is not ``group``, ``id``, ``time`` or ``split``),
``categorical`` (``auto``: text, boolean and pandas categorical columns; or a list), ``group``
(fairness slices), ``id`` (leakage of one entity across splits), ``time`` (splits in time
order: the latest rows are the test split), ``split`` (a column of ``train``/``val``/``calib``/
``test``; absent ones are split off train).

Encoding is fitted on the train split only: missing values imputed (median for numbers, most
frequent value for categories), categories one-hot encoded over the values train shows (a
category train never shows becomes all zeros, and is counted), and with
``preprocess=standardize`` every feature standardized with train statistics. With
``preprocess=none`` numeric features go in exactly as given. The encoding does what
scikit-learn's ``SimpleImputer`` + ``OneHotEncoder(handle_unknown="ignore")`` do (the tests
check it against them) but with pandas categorical codes written straight into one float32
array: on a million rows the scikit-learn ``ColumnTransformer`` took 5.3 s and a float64 copy
of the whole matrix, this about a second.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from mlbench.choices import Preprocess, choose
from mlbench.data.base import (
    DataMeta,
    Dataset,
    assigned_splits,
    check_arrays,
    check_seen,
    split_count,
    stratified_splits,
)
from mlbench.errors import MlbenchError, first_line
from mlbench.train.cache import file_sha256


def read_table(path: Path) -> Any:
    """A pandas DataFrame from a CSV or Parquet file, or one error line."""
    import pandas as pd

    if not path.is_file():
        raise MlbenchError(f"data.path: {path} does not exist")
    suffix = path.suffix.lower()
    try:
        if suffix in (".parquet", ".pq"):
            return pd.read_parquet(path)
        if suffix in (".csv", ".tsv", ".txt", ".gz"):
            return pd.read_csv(path, sep="\t" if ".tsv" in path.name else ",", engine="pyarrow")
    except Exception as e:  # pyarrow and pandas raise many kinds on a damaged file
        raise MlbenchError(f"data.path: {path} cannot be read as {suffix[1:]} ({type(e).__name__}: {first_line(e)})") from None
    raise MlbenchError(f"data.path: {path}: expected a .csv, .tsv or .parquet file")


def encode(df: Any, nums: list[str], cats: list[str], train: np.ndarray):
    """The model's features as float32, fitted on the ``train`` rows only: numeric columns with
    missing values imputed by the train median, then each categorical column (missing: the train
    split's most frequent value) one-hot over the categories train shows, sorted; a category
    train never shows is all zeros. Returns (x, feature names, imputed values, vocabularies,
    unseen-category counts outside train, missing-value counts)."""
    import pandas as pd

    n = len(df)
    vocab = {}
    for c in cats:
        vals = df[c].astype("string")
        vocab[c] = sorted(vals.iloc[train].dropna().unique().tolist())
    width = len(nums) + sum(len(v) for v in vocab.values())
    x = np.zeros((n, width), dtype=np.float32)
    names, imputed, missing, unseen = [], {}, {}, {}
    is_train = np.zeros(n, dtype=bool)
    is_train[train] = True
    for j, c in enumerate(nums):
        col = pd.to_numeric(df[c], errors="coerce").to_numpy(dtype=np.float64, na_value=np.nan)
        gone = np.isnan(col)
        if gone.any():
            missing[c] = int(gone.sum())
            imputed[c] = float(np.nanmedian(col[train]))
            col = np.where(gone, imputed[c], col)
        x[:, j] = col
        names.append(c)
    j = len(nums)
    for c in cats:
        vals = df[c].astype("string")
        gone = vals.isna().to_numpy()
        if gone.any():
            missing[c] = int(gone.sum())
            imputed[c] = str(vals.iloc[train].mode(dropna=True).iloc[0])
            vals = vals.fillna(imputed[c])
        codes = pd.Categorical(vals, categories=vocab[c]).codes.astype(np.int64)
        hit = codes >= 0
        x[np.flatnonzero(hit), j + codes[hit]] = 1.0
        if (~hit & ~is_train).any():
            unseen[c] = int((~hit & ~is_train).sum())
        names += [f"{c}_{v}" for v in vocab[c]]
        j += len(vocab[c])
    return x, names, imputed, vocab, unseen, missing


def time_ordered(order: np.ndarray, sizes: dict[str, float]) -> dict[str, np.ndarray]:
    """Positions split by time: ``order`` sorts the rows oldest first; test takes the latest
    rows, calib those before, then val; the oldest are train."""
    n = len(order)
    counts = {k: split_count(v, n, k) for k, v in sizes.items()}
    if sum(counts.values()) >= n:
        raise MlbenchError(f"data: split sizes {counts} leave no training rows out of {n}")
    out, end = {}, n
    for name in ("test", "calib", "val"):
        out[name] = np.sort(order[end - counts[name]:end])
        end -= counts[name]
    out["train"] = np.sort(order[:end])
    return out


class Table(Dataset):
    """Rows of a CSV/Parquet file as tabular features (see the module docstring)."""

    modality = "tabular"

    def __init__(self, path: str, target: str = "target", features: list[str] | None = None,
                 categorical: Any = "auto", group: str | None = None, id: str | None = None,
                 time: str | None = None, split: str | None = None, preprocess: str = "standardize",
                 unlabelled: str | None = None,
                 val: float = 0.15, calib: float = 0.15, test: float = 0.25, seed: int = 0):
        super().__init__(val, calib, test, seed)
        self.path = Path(path).expanduser()
        self.unlabelled = Path(unlabelled).expanduser() if unlabelled else None
        self.target, self.features, self.group, self.id, self.time, self.split = target, features, group, id, time, split
        if categorical != "auto" and not isinstance(categorical, (list, tuple)) and categorical is not None:
            raise MlbenchError(f"data.categorical must be auto or a list of columns, got {categorical!r}")
        self.categorical = categorical
        self.preprocess = str(choose(Preprocess, preprocess, "data.preprocess"))
        self.standardize = self.preprocess == "standardize"

    def _columns(self, df: Any) -> tuple[list[str], list[str]]:
        """(feature columns, the categorical ones among them), checked against the table."""
        import pandas as pd

        named = {"target": self.target, "group": self.group, "id": self.id, "time": self.time, "split": self.split}
        for key, col in named.items():
            if col is not None and col not in df.columns:
                hint = ("; rows without labels go in data.unlabelled, beside a labelled data.path"
                        if key == "target" else "")
                raise MlbenchError(f"data.{key}: no column {col!r} in {self.path.name} "
                                   f"(columns: {', '.join(map(str, df.columns[:12]))}){hint}")
        special = {c for c in named.values() if c is not None}
        feats = list(self.features) if self.features else [c for c in df.columns if c not in special]
        missing = [c for c in feats if c not in df.columns]
        if missing:
            raise MlbenchError(f"data.features: no column(s) {missing[:5]} in {self.path.name}")
        if not feats:
            raise MlbenchError(f"data: {self.path.name} has no feature column besides {sorted(special)}")
        if self.categorical == "auto":
            cats = [c for c in feats if not pd.api.types.is_numeric_dtype(df[c]) or pd.api.types.is_bool_dtype(df[c])]
        else:
            cats = list(self.categorical or [])
            bad = [c for c in cats if c not in feats]
            if bad:
                raise MlbenchError(f"data.categorical: {bad[:5]} are not feature columns")
        for c in feats:
            if pd.api.types.is_datetime64_any_dtype(df[c]):
                raise MlbenchError(f"data: column {c!r} holds dates; name it data.time (time-ordered splits) or "
                                   "leave it out of data.features")
            if pd.api.types.is_numeric_dtype(df[c]) or pd.api.types.is_bool_dtype(df[c]):
                continue
            # a column of numbers with a few words in it is a numeric column with bad values; a
            # sample of 1,000 values decides whether the whole column is worth parsing
            sample = df[c].dropna().iloc[:1000]
            mostly_numbers = pd.to_numeric(sample, errors="coerce").notna().mean() >= 0.9 if len(sample) else False
            if c not in cats or (self.categorical == "auto" and mostly_numbers):
                present = df[c].notna()
                text = pd.to_numeric(df[c], errors="coerce").isna() & present
                if c not in cats or 0 < text.sum() <= 0.1 * present.sum():
                    row = int(np.flatnonzero(text.to_numpy())[0])
                    raise MlbenchError(f"data: column {c!r} holds text ({df[c].iloc[row]!r} in row {row}) among "
                                       + ("numbers" if c in cats else "values not listed in data.categorical")
                                       + "; fix the value or list the column in data.categorical")
            distinct = df[c].nunique()
            if self.categorical == "auto" and len(df) > 20 and distinct > 0.5 * len(df):
                raise MlbenchError(f"data: text column {c!r} has {distinct} distinct values in {len(df)} rows (an id?); "
                                   "name it data.id, or list it in data.categorical, or leave it out of data.features")
        empty = [c for c in feats if df[c].isna().all()]
        if empty:
            raise MlbenchError(f"data: column(s) {empty[:5]} hold no value at all (every row missing); drop them "
                               "or list data.features")
        return feats, cats

    def _splits(self, df: Any, y: np.ndarray) -> dict[str, np.ndarray]:
        if self.split is not None:
            assigned = df[self.split].fillna("").astype(str).str.strip().str.lower().to_numpy()
            return assigned_splits(assigned, y, self.sizes, self.seed, f"data.split column {self.split!r}")
        if self.time is not None:
            order = np.argsort(df[self.time].to_numpy(), kind="stable")
            return check_seen(time_ordered(order, self.sizes), y, f"data.time column {self.time!r}")
        return stratified_splits(y, self.sizes, self.seed)

    def load(self):
        import pandas as pd

        df = read_table(self.path)
        feats, cats = self._columns(df)
        target = df[self.target]
        if target.isna().any():
            rows = np.flatnonzero(target.isna().to_numpy())
            raise MlbenchError(f"data.target: {len(rows)} rows without a label in column {self.target!r} "
                               f"(first rows: {rows[:5].tolist()}); put unlabelled rows in a file of their own: "
                               "data.unlabelled")
        classes = sorted(target.unique().tolist(), key=lambda v: (str(type(v)), v))
        if len(classes) < 2:
            raise MlbenchError(f"data.target: column {self.target!r} holds {len(classes)} distinct value(s); "
                               "a classifier needs at least two")
        y = pd.Categorical(target, categories=classes).codes.astype(np.int64)
        parts = self._splits(df, y)
        nums = [c for c in feats if c not in cats]
        rows = enc = df
        if self.unlabelled is not None:  # encoded with the labelled train split's imputation and vocabularies
            enc = pd.concat([df[feats], self._unlabelled_rows(feats, nums)], ignore_index=True)
        x, names, imputed, vocab, unseen, missing = encode(enc, nums, cats, parts["train"])
        x, u = x[:len(df)], (x[len(df):] if self.unlabelled is not None else None)
        group = None
        if self.group is not None:
            gvals = df[self.group].fillna("(missing)").astype(str)
            gnames = sorted(gvals.unique().tolist())
            group = pd.Categorical(gvals, categories=gnames).codes.astype(np.int64)
        check_arrays(x, y, len(classes), f"table:{self.path.name}")
        meta = DataMeta(f"table:{self.path.stem}", (x.shape[1],), len(classes), [str(c) for c in classes],
                        "tabular", None, feature_names=names, group_name=self.group)
        meta.preprocessing = {
            "reader": "pandas (pyarrow)", "target": self.target, "classes": [str(c) for c in classes],
            "columns": feats, "numeric": nums, "categorical": cats,
            "categorical_from": "config" if self.categorical != "auto" else "auto (non-numeric columns)",
            "imputation": {"numeric": "median of train", "categorical": "most frequent in train",
                           "values": {c: imputed[c] for c in missing}},
            "encoding": "one-hot per category seen in train (unseen: all zeros), in feature_names order",
            "vocabularies": vocab, "preprocess": self.preprocess, "fitted_on": "train split"}
        self.record = {"path": str(self.path), "rows": int(len(rows)), "manifest_hash": file_sha256(self.path)[:16],
                       "missing_values": missing, "unseen_categories": unseen,
                       "group_values": gnames if group is not None else None,
                       "split_by": ("column " + self.split) if self.split else
                                   ("time column " + self.time) if self.time else "stratified, seeded"}
        extras: dict[str, Any] = {}
        findings = []
        if missing:
            findings.append(("warn", f"{sum(missing.values())} missing values in {len(missing)} column(s) "
                                     f"({', '.join(f'{c}: {n}' for c, n in list(missing.items())[:5])}); imputed "
                                     "with train medians / most frequent values", sum(missing.values())))
        if unseen:
            findings.append(("warn", f"{sum(unseen.values())} values outside train of categories train never "
                                     f"shows ({', '.join(f'{c}: {n}' for c, n in unseen.items())}); encoded as "
                                     "all zeros", sum(unseen.values())))
        if findings:
            extras["source_findings"] = findings
        if self.id is not None:
            ids = df[self.id].astype(str).to_numpy()
            extras["ids"] = {s: ids[p] for s, p in parts.items()}
        if self.time is not None:  # each row's place in time (0 = oldest): time-ordered folds read it
            rank = np.empty(len(df), dtype=np.int64)
            rank[np.argsort(df[self.time].to_numpy(), kind="stable")] = np.arange(len(df))
            extras["time_rank"] = {s: rank[p] for s, p in parts.items()}
        if u is not None:
            self.record["unlabelled"] = {"path": str(self.unlabelled), "rows": int(len(u)),
                                         "manifest_hash": file_sha256(self.unlabelled)[:16]}
        return self.bundle(x, y, group, meta, parts, extras, unlabelled=u)

    def _unlabelled_rows(self, feats: list[str], nums: list[str]) -> Any:
        """``data.unlabelled``'s feature columns (its target column, if any, is ignored)."""
        import pandas as pd

        df = read_table(self.unlabelled)
        absent = [c for c in feats if c not in df.columns]
        if absent:
            raise MlbenchError(f"data.unlabelled: {self.unlabelled.name} lacks feature column(s) {absent[:5]}")
        for c in nums:
            text = pd.to_numeric(df[c], errors="coerce").isna() & df[c].notna()
            if text.any():
                row = int(np.flatnonzero(text.to_numpy())[0])
                raise MlbenchError(f"data.unlabelled: column {c!r} holds text ({df[c].iloc[row]!r} in row {row}) "
                                   "among numbers")
        if len(df) == 0:
            raise MlbenchError(f"data.unlabelled: {self.unlabelled.name} has no row")
        return df[feats]

"""Run history in SQLite (standard library): each run's key figures, one row per
(run, variant, metric). WAL mode and a busy timeout let concurrent sweep jobs write
without losing rows; each run is written in one transaction."""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path

from mlbench.errors import MlbenchError
from mlbench.evaluate.registry import HISTORY, names

KEY_METRICS = names(tag=HISTORY)

SCHEMA = """
CREATE TABLE IF NOT EXISTS runs (
  run_dir TEXT PRIMARY KEY, run_id TEXT, started TEXT, data TEXT, model TEXT,
  config_hash TEXT, git_sha TEXT, device TEXT, recorded REAL);
CREATE TABLE IF NOT EXISTS metrics (
  run_dir TEXT, variant TEXT, metric TEXT, value REAL, passed INTEGER,
  PRIMARY KEY (run_dir, variant, metric));
"""


def connect(db: Path) -> sqlite3.Connection:
    db.parent.mkdir(parents=True, exist_ok=True)
    conn = sqlite3.connect(str(db), timeout=120, isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA busy_timeout=120000")
    conn.executescript(SCHEMA)
    return conn


def record(db: Path, summary: dict, run_dir: Path) -> None:
    """Store one run's key figures (replacing an earlier record of the same run dir)."""
    cfg = summary["run"]["config"]
    model = str(cfg.get("model", {}).get("_target_", "")).rsplit(".", 1)[-1]
    env = summary["run"]["env"]
    rows = []
    for name, v in summary["variants"].items():
        passed = (v.get("requirements") or {}).get("passed")
        for m in KEY_METRICS:
            value = (v.get("metrics") or {}).get(m)
            if value is not None:
                rows.append((str(run_dir), name, m, float(value), None if passed is None else int(passed)))
    for attempt in range(20):
        conn = connect(db)
        try:
            conn.execute("BEGIN IMMEDIATE")
            conn.execute("DELETE FROM metrics WHERE run_dir = ?", (str(run_dir),))  # a reused run dir
            conn.execute("INSERT OR REPLACE INTO runs VALUES (?,?,?,?,?,?,?,?,?)",
                         (str(run_dir), summary["run"]["id"], summary["run"]["started"], summary["data"]["name"],
                          model, summary["run"].get("config_hash"), env.get("git_sha"), env.get("device"),
                          time.time()))
            conn.executemany("INSERT OR REPLACE INTO metrics VALUES (?,?,?,?,?)", rows)
            conn.execute("COMMIT")
            return
        except sqlite3.OperationalError:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            time.sleep(0.05 * (attempt + 1))
        finally:
            conn.close()
    raise RuntimeError(f"could not write the run history to {db}")


def history(db: Path, metrics: list[str]) -> list[dict]:
    """One row per (run, variant), oldest first, with the requested metrics."""
    if not db.is_file():
        return []
    try:
        return _history(db, metrics)
    except sqlite3.DatabaseError as e:
            raise MlbenchError(f"history database {db} is unreadable ({e})") from None


def _history(db: Path, metrics: list[str]) -> list[dict]:
    conn = sqlite3.connect(str(db), timeout=30)  # reads only; creates nothing
    try:
        runs = conn.execute("SELECT run_dir, started, data, model, git_sha FROM runs ORDER BY started, recorded").fetchall()
        out = []
        for run_dir, started, data, model, sha in runs:
            vals: dict[str, dict] = {}
            for variant, metric, value, passed in conn.execute(
                    "SELECT variant, metric, value, passed FROM metrics WHERE run_dir = ?", (run_dir,)):
                row = vals.setdefault(variant, {"requirements": passed})
                row[metric] = value
            for variant, row in vals.items():
                out.append({"started": started, "run_dir": run_dir, "data": data, "model": model,
                            "git_sha": sha, "variant": variant, **{m: row.get(m) for m in metrics},
                            "requirements": row.get("requirements")})
        return out
    finally:
        conn.close()

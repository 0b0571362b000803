"""Run the README's example commands as written, each with `debug=smoke` appended so the whole
list takes minutes, in a scratch folder; print what each returned.

    python scripts/check_readme.py            # every runnable mlbench / mlbench-export command
    python scripts/check_readme.py --list     # only list them, with why some are skipped

Skipped, with the reason printed: installs, the test command, GPU-only commands, placeholder
paths (`...`, `some_model.onnx`), servers (`mlflow ui`) and the benchmark scripts (they have
their own docs). A command whose data is absent on purpose (`paths.data_root=/datasets`) must
end in one `error:` line with status 2.
"""

from __future__ import annotations

import argparse
import os
import re
import shlex
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SKIP = [("pip install", "an install"), ("pytest", "the test command"), ("backend=gpu", "needs CUDA"),
        ("...", "a placeholder path"), ("some_model.onnx", "a placeholder file"),
        ("mlflow ui", "starts a server"), ("scripts/", "a benchmark script"),
        ("python3 -m venv", "the install line (its `mlbench` is the first command below)"),
        ("10-00-00", "a placeholder sweep folder")]
for _pkg in ("timm", "torchvision"):  # optional zoo packages: their commands run where they import
    try:
        __import__(_pkg)
    except Exception:
        SKIP.append((f"model={_pkg}", f"{_pkg} is not installed (or does not match this torch build)"))
        if _pkg == "torchvision":  # image augmentation: torchvision.transforms.v2
            SKIP.append(("augment=image_", "torchvision is not installed (or does not match this torch build)"))
EXPECTED_ERROR = {"paths.data_root=/datasets": "the dataset is absent here on purpose"}


def commands() -> list[str]:
    text = (ROOT / "README.md").read_text()
    out = []
    for block in re.findall(r"```bash\n(.*?)```", text, re.S):
        for line in block.splitlines():
            line = line.strip()
            if line and not line.startswith("#"):
                out.append(line)
    return out


def strip_comment(cmd: str) -> str:
    """The command as written, less a trailing `# comment` (quotes and globs kept for the shell)."""
    shlex.split(cmd, comments=True)  # a line the shell could not parse fails here
    return re.sub(r"\s+#\s.*$", "", cmd).strip()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--list", action="store_true")
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="mlbench-readme-"))
    env = {**os.environ, "MLBENCH_RESULTS": str(work / "results"), "MLBENCH_CACHE": str(work / "cache")}
    bindir = Path(sys.executable).parent
    env["PATH"] = f"{bindir}{os.pathsep}{env.get('PATH', '')}"
    failed = 0
    for cmd in commands():
        why = next((w for pat, w in SKIP if pat in cmd), None)
        if why is None and not cmd.startswith(("mlbench", "mlbench-export")):
            why = "not an mlbench command"
        if why is not None:
            print(f"skip  {cmd[:90]}  ({why})")
            continue
        run = strip_comment(cmd)
        if "|" in cmd:  # a pipeline: run it through the shell as written
            run = cmd.split("|")[0].strip() + " debug=smoke | " + cmd.split("|", 1)[1].strip()
        elif not run.startswith(("mlbench compare", "mlbench-export", "mlbench examples")):
            run += " debug=smoke"
        if args.list:
            print(f"run   {run}")
            continue
        t0 = time.perf_counter()
        out = subprocess.run(run, shell=True, cwd=work, env=env, capture_output=True, text=True, timeout=1800)
        expected = next((w for pat, w in EXPECTED_ERROR.items() if pat in cmd), None)
        ok = (out.returncode == 2 and out.stderr.strip().startswith("error:")) if expected else out.returncode == 0
        failed += not ok
        status = "ok  " if ok else "FAIL"
        note = f" (expected: {expected})" if expected else ""
        print(f"{status}  exit {out.returncode}  {time.perf_counter() - t0:5.1f} s  {run[:100]}{note}", flush=True)
        if not ok:
            print("      " + (out.stderr.strip() or out.stdout.strip()).splitlines()[-1][:200])
    print(f"{failed} failed; scratch folder {work}")
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()

"""report.html and compare.html in a real browser (headless Chromium): the page does not
overflow sideways, every image loads, and the decision (each run's choice, on compare.html)
is on the first screen.

The pages get a small script appended that measures the laid-out page after it loaded and
writes the figures into the DOM; Chromium's ``--dump-dom`` prints that DOM. Skipped (with
the reason) where Chromium is not installed; `.ci/run` installs Debian's package.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess

import pytest
from conftest import run_cli

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="headless Chromium is not installed "
                                                         "(Debian: apt-get install chromium)")

PROBE = """<script>
window.addEventListener('load', () => {
  const doc = document.documentElement;
  const first = document.querySelector(FIRST);
  const imgs = [...document.images];
  const r = {page_width: doc.scrollWidth, view_width: doc.clientWidth, view_height: window.innerHeight,
             images: imgs.length, broken: imgs.filter(i => !(i.complete && i.naturalWidth > 0)).map(i => i.alt),
             first_top: first ? first.getBoundingClientRect().top : null,
             first_text: first ? first.textContent.slice(0, 200) : null};
  const pre = document.createElement('pre'); pre.id = 'probe'; pre.textContent = JSON.stringify(r);
  document.body.appendChild(pre);
});
</script>"""


def measure(page, first_selector: str, tmp_path, width: int = 1280, height: int = 800) -> dict:
    """Load a copy of ``page`` with the probe in headless Chromium at width × height."""
    probe = tmp_path / f"probe_{page.name}"
    probe.write_text(page.read_text().replace("</body>", PROBE.replace("FIRST", json.dumps(first_selector))
                                              + "</body>"))
    out = subprocess.run([CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
                          "--disable-background-networking", "--disable-component-update", "--disable-sync",
                          f"--user-data-dir={tmp_path / 'profile'}", f"--window-size={width},{height}",
                          "--virtual-time-budget=10000", "--dump-dom", probe.as_uri()],
                         capture_output=True, text=True, timeout=120)
    m = re.search(r"<pre id=\"probe\">(.*?)</pre>", out.stdout, re.S)
    assert m, f"no probe output from Chromium: {out.stderr[-1500:]}"
    return json.loads(m.group(1).replace("&quot;", '"').replace("&amp;", "&").replace("&lt;", "<")
                      .replace("&gt;", ">"))


@pytest.mark.parametrize("width", [1280, 800])
def test_report_page_fits_loads_its_images_and_leads_with_the_decision(smoke_run, tmp_path, width):
    run_dir, summary, _ = smoke_run
    r = measure(run_dir / "report.html", "#decision", tmp_path, width=width)
    assert r["page_width"] <= r["view_width"], r  # no sideways scrolling of the page
    assert r["images"] >= 10 and r["broken"] == [], r
    assert r["first_top"] is not None and r["first_top"] < r["view_height"], r  # the decision on screen one
    rec = summary["recommended"]["variant"]
    assert (f"Ship {rec}" if rec else "No variant recommended") in r["first_text"]


def test_compare_page_fits_loads_its_images_and_leads_with_the_choices(smoke_run, tmp_path):
    run_dir, summary, _ = smoke_run
    out = run_cli("compare", str(run_dir), "--out", str(tmp_path / "cmp"), cwd=tmp_path)
    assert out.returncode == 0, out.stdout + out.stderr
    r = measure(tmp_path / "cmp" / "compare.html", "#decision", tmp_path)
    assert r["page_width"] <= r["view_width"], r
    assert r["images"] >= 1 and r["broken"] == [], r
    assert r["first_top"] is not None and r["first_top"] < r["view_height"], r  # each run's choice on screen one
    rec = summary["recommended"]["variant"]
    assert r["first_text"].startswith("Recommended: ") and (rec or "none") in r["first_text"]

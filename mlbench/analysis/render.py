"""A tiny document model rendered to Markdown and to self-contained HTML.

Reports are built once as a list of blocks and written both ways, so report.md and
report.html never disagree. Images are linked from Markdown and embedded (base64)
in HTML, so the HTML file stands alone.
"""

from __future__ import annotations

import base64
import html
import re
from pathlib import Path

from mlbench.text import Doc

__all__ = ["Doc", "to_markdown", "to_html"]


def to_markdown(doc: Doc) -> str:
    out: list[str] = []
    for b in doc.blocks:
        kind = b[0]
        if kind in ("h1", "h2", "h3"):
            out += ["#" * int(kind[1]) + " " + b[1], ""]
        elif kind == "p":
            out += [b[1], ""]
        elif kind == "note":
            out += [f"> {b[1]}", ""]
        elif kind == "ul":
            out += [f"- {i}" for i in b[1]] + [""]
        elif kind == "table":
            header, rows = b[1], b[2]
            out += ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
            out += ["| " + " | ".join(str(c).replace("|", "\\|") for c in r) + " |" for r in rows] + [""]
        elif kind == "img":
            out += [f"![{b[2] or b[1]}]({b[1]})", ""]
    return "\n".join(out)


def _inline(text: str) -> str:
    t = html.escape(text)
    t = re.sub(r"\*\*(.+?)\*\*", r"<b>\1</b>", t)
    t = re.sub(r"`(.+?)`", r"<code>\1</code>", t)
    return t


CSS = """*{box-sizing:border-box}body{font-family:system-ui,sans-serif;max-width:1200px;margin:1.5em auto;
padding:0 1em;color:#222;overflow-wrap:anywhere}
.tw{overflow-x:auto;margin:.5em 0 1.5em}table{border-collapse:collapse;font-size:.85em}
th,td{border:1px solid #ccc;padding:.25em .5em;text-align:right;white-space:nowrap;overflow-wrap:normal}
th{background:#f3f3f3}td:first-child,th:first-child{text-align:left}td.long{white-space:normal;min-width:16em;
text-align:left}td.pass{background:#e3f4e3;color:#185c18;font-weight:600}td.fail{background:#fbe3e3;
color:#8a1c1c;font-weight:600}img{max-width:100%;height:auto}code{background:#f3f3f3;padding:0 .2em}
figure{margin:1em 0}figcaption{font-size:.8em;color:#555}
.note{border-left:6px solid #2e7d32;background:#f1f8f1;padding:.8em 1em;margin:1em 0;font-size:1.05em}
.note.none{border-color:#c77700;background:#fff6e5}"""


def _cell(c: str) -> str:
    """A table cell: pass/fail coloured, long text allowed to wrap, everything else on one line."""
    text = str(c)
    cls = {"pass": " class='pass'", "fail": " class='fail'"}.get(text.strip(), "")
    if not cls and len(text) > 40:
        cls = " class='long'"
    return f"<td{cls}>{_inline(text)}</td>"


def to_html(doc: Doc, base: Path, title: str) -> str:
    out = [f"<!doctype html><html><head><meta charset='utf-8'>"
           "<meta name='viewport' content='width=device-width, initial-scale=1'><title>"
           f"{html.escape(title)}</title>"
           f"<style>{CSS}</style></head><body>"]
    for b in doc.blocks:
        kind = b[0]
        if kind in ("h1", "h2", "h3"):
            out.append(f"<{kind}>{_inline(b[1])}</{kind}>")
        elif kind == "p":
            out.append(f"<p>{_inline(b[1])}</p>")
        elif kind == "note":
            out.append(f"<div class='note{'' if b[2] else ' none'}' id='decision'>{_inline(b[1])}</div>")
        elif kind == "ul":
            out.append("<ul>" + "".join(f"<li>{_inline(i)}</li>" for i in b[1]) + "</ul>")
        elif kind == "table":
            head = "".join(f"<th>{_inline(str(h))}</th>" for h in b[1])
            body = "".join("<tr>" + "".join(_cell(c) for c in r) + "</tr>" for r in b[2])
            out.append(f"<div class='tw'><table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table></div>")
        elif kind == "img":
            path = base / b[1]
            if path.is_file():
                data = base64.b64encode(path.read_bytes()).decode()
                out.append(f"<figure><img alt='{html.escape(b[1])}' src='data:image/png;base64,{data}'>"
                           f"<figcaption>{html.escape(b[2] or b[1])}</figcaption></figure>")
    out.append("</body></html>")
    return "\n".join(out)

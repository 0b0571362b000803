"""Text for people: the document model every report is built in (rendered to Markdown and
HTML by ``analysis/render.py``) and the formatters for values and intervals. Components
(stressors, data checks, ...) write their own report sections with these, so they live
below every stage and import nothing of mlbench."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass
class Doc:
    blocks: list[tuple] = field(default_factory=list)

    def h1(self, text: str) -> None:
        self.blocks.append(("h1", text))

    def h2(self, text: str) -> None:
        self.blocks.append(("h2", text))

    def h3(self, text: str) -> None:
        self.blocks.append(("h3", text))

    def p(self, text: str) -> None:
        self.blocks.append(("p", text))

    def items(self, items: list[str]) -> None:
        if items:
            self.blocks.append(("ul", items))

    def note(self, text: str, ok: bool = True) -> None:
        """A highlighted paragraph (the decision): a box in HTML, a quote in Markdown."""
        self.blocks.append(("note", text, ok))

    def table(self, header: list[str], rows: list[list[str]]) -> None:
        self.blocks.append(("table", header, rows))

    def image(self, path: str, caption: str = "") -> None:
        self.blocks.append(("img", path, caption))



def fmt(v: Any, digits: int = 4) -> str:
    """A figure for a table: "–" when missing, floats to ``digits`` decimals."""
    if v is None:
        return "–"
    if isinstance(v, float):
        return f"{v:.{digits}f}"
    return str(v)


def delta_text(d: dict | None, digits: int = 4, scale: float = 1.0) -> str:
    """A paired difference with its interval, "+0.0100 [-0.0020, +0.0220]*" (``*``: the
    interval excludes 0); "" when missing."""
    if not d or d.get("value") is None:
        return ""
    mark = "*" if d.get("significant") else ""
    if d.get("ci_low") is None:
        return f"{d['value'] * scale:+.{digits}f}"
    return (f"{d['value'] * scale:+.{digits}f} [{d['ci_low'] * scale:+.{digits}f}, "
            f"{d['ci_high'] * scale:+.{digits}f}]{mark}")


def interval_text(value: float | None, lo: float | None, hi: float | None, digits: int = 3) -> str:
    """A value with its interval, "0.912 [0.880, 0.940]"; the value alone without one."""
    if value is None:
        return "–"
    return f"{value:.{digits}f}" + (f" [{lo:.{digits}f}, {hi:.{digits}f}]" if lo is not None and hi is not None else "")


def kb_text(v: Any) -> str:
    """Bytes as kilobytes with one decimal ("–" when missing)."""
    return "–" if v is None else f"{v / 1024:.1f}"


def points_text(d: dict | None) -> str:
    """An accuracy change in points with its interval, compact: "-0.4 [-1.1, +0.0]*"."""
    if not d or d.get("value") is None:
        return ""
    mark = "*" if d.get("significant") else ""
    if d.get("ci_low") is None:
        return f"{100 * d['value']:+.1f}"
    return f"{100 * d['value']:+.1f} [{100 * d['ci_low']:+.1f},{100 * d['ci_high']:+.1f}]{mark}"

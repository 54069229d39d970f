"""reports/evaluation.html: one self-contained page (inline CSS and SVG, nothing loaded from the
network) with the tables and plots a reviewer reads."""

from __future__ import annotations

import html
from typing import Any, Literal

from recfusion.evaluation.metric_names import lower_is_better

COLORS = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2",
          "#7f7f7f", "#bcbd22", "#17becf")  # fmt: skip
STYLE = (
    "body{font-family:sans-serif;max-width:80em;margin:2em auto;padding:0 1em;color:#222}"
    "table{border-collapse:collapse;margin:.5em 0 1.5em}td,th{border:1px solid #ccc;"
    "padding:.25em .5em;text-align:right}th:first-child,td:first-child{text-align:left}"
    ".best{font-weight:bold;background:#eef6ee}.note{color:#555;font-size:.9em}"
    ".mark{background:#fde68a;padding:0 .3em;font-size:.85em}.header td{text-align:left}"
)


def escape(x: object) -> str:
    """HTML-escaped text of `x`."""
    return html.escape(str(x))


def _fmt(v: object) -> str:
    return f"{v:.4f}" if isinstance(v, float) else escape(v)


def table(
    rows: dict[str, dict[str, Any]],
    columns: list[str],
    best_in: Literal["column", "row"] | None = "column",
) -> str:
    """Rows keyed by name; the best value of each column (`best_in="column"`: columns are
    metrics) or of each row (`"row"`: rows are metrics, e.g. slices compared across methods) is
    highlighted: the smallest for a lower-is-better metric (`metric_names.lower_is_better`), else
    the largest. None highlights nothing."""
    lines: list[tuple[str, list[tuple[str, str]]]] = []  # (metric, its (row, column) cells)
    if best_in == "column":
        lines = [(c, [(n, c) for n in rows]) for c in columns]
    elif best_in == "row":
        lines = [(n, [(n, c) for c in columns]) for n in rows]
    best: dict[tuple[str, str], float] = {}  # (row, column) -> the best value of its line
    for metric, line in lines:
        values = [v for n, c in line if isinstance(v := rows[n].get(c), float) and v == v]
        if values:
            top = min(values) if lower_is_better(metric) else max(values)
            best.update(dict.fromkeys(line, top))
    out = ["<table><tr><th></th>" + "".join(f"<th>{escape(c)}</th>" for c in columns) + "</tr>"]
    for name, r in rows.items():
        cells = []
        for c in columns:
            v = r.get(c, "")
            cls = " class='best'" if (name, c) in best and v == best[name, c] else ""
            cells.append(f"<td{cls}>{_fmt(v)}</td>")
        out.append(f"<tr><td>{escape(name)}</td>{''.join(cells)}</tr>")
    return "\n".join(out) + "</table>"


def line_chart(series: dict[str, list[tuple[float, float]]], x_label: str, y_label: str,
               width: int = 640, height: int = 320) -> str:  # fmt: skip
    """An inline SVG line chart, one line per series."""
    pts = [p for s in series.values() for p in s]
    if not pts:
        return ""
    xs, ys = [p[0] for p in pts], [p[1] for p in pts]
    x0, x1, y1 = min(xs), max(xs), max(ys) * 1.05 or 1.0
    pad, right = 50, 190

    def sx(x: float) -> float:
        return pad + (x - x0) / ((x1 - x0) or 1) * (width - pad - right)

    def sy(y: float) -> float:
        return height - pad + -y / y1 * (height - 2 * pad)

    out = [f"<svg width='{width}' height='{height}' xmlns='http://www.w3.org/2000/svg'>",
           f"<line x1='{pad}' y1='{height - pad}' x2='{width - right}' y2='{height - pad}' "
           "stroke='#333'/>", f"<line x1='{pad}' y1='{pad}' x2='{pad}' y2='{height - pad}' "
           "stroke='#333'/>"]  # fmt: skip
    for x in sorted(set(xs)):
        out.append(f"<text x='{sx(x):.0f}' y='{height - pad + 16}' font-size='11' "
                   f"text-anchor='middle'>{x:g}</text>")  # fmt: skip
    for i in range(5):
        y = y1 * i / 4
        out.append(f"<text x='{pad - 6}' y='{sy(y) + 4:.0f}' font-size='11' "
                   f"text-anchor='end'>{y:.2f}</text>")  # fmt: skip
    for i, (name, s) in enumerate(series.items()):
        color = COLORS[i % len(COLORS)]
        path = " ".join(f"{sx(x):.1f},{sy(y):.1f}" for x, y in sorted(s))
        out.append(f"<polyline fill='none' stroke='{color}' stroke-width='2' points='{path}'/>")
        ly = pad + 14 * i
        out.append(f"<rect x='{width - right + 10}' y='{ly - 8}' width='10' height='10' "
                   f"fill='{color}'/><text x='{width - right + 24}' y='{ly + 1}' "
                   f"font-size='11'>{escape(name)}</text>")  # fmt: skip
    out.append(f"<text x='{(width - right) / 2}' y='{height - 8}' font-size='12' "
               f"text-anchor='middle'>{escape(x_label)}</text>")  # fmt: skip
    out.append(f"<text x='12' y='{height / 2}' font-size='12' transform='rotate(-90 12 "
               f"{height / 2})' text-anchor='middle'>{escape(y_label)}</text></svg>")  # fmt: skip
    return "".join(out)


def bar_chart(series: dict[str, dict[str, float]], width: int = 640, bar: int = 14) -> str:
    """An inline SVG horizontal bar chart: one group of bars per label, one bar per series
    (`series`: series name -> label -> value; a label a series lacks gets no bar), and a legend
    when there is more than one series."""
    labels = list(dict.fromkeys(label for s in series.values() for label in s))
    finite = [v for s in series.values() for v in s.values() if v == v]
    if not labels:
        return ""
    top = max(finite, default=0.0) or 1.0
    label_w, gap = 220, 6
    legend_h = 16 * len(series) if len(series) > 1 else 0
    group = bar * len(series) + gap
    height = legend_h + group * len(labels) + 10
    out = [f"<svg width='{width}' height='{height}' xmlns='http://www.w3.org/2000/svg'>"]
    if len(series) > 1:
        for j, name in enumerate(series):
            y = 4 + 16 * j
            out.append(
                f"<rect x='{label_w}' y='{y}' width='10' height='10' "
                f"fill='{COLORS[j % len(COLORS)]}'/><text x='{label_w + 14}' y='{y + 9}' "
                f"font-size='11'>{escape(name)}</text>"
            )
    for i, label in enumerate(labels):
        y0 = legend_h + 5 + i * group
        out.append(
            f"<text x='{label_w - 6}' y='{y0 + group / 2 + 1:.0f}' font-size='11' "
            f"text-anchor='end'>{escape(label)}</text>"
        )
        for j, values in enumerate(series.values()):
            if label not in values:
                continue
            v, y = values[label], y0 + j * bar
            w = (width - label_w - 60) * (v / top if v == v else 0)
            out.append(
                f"<rect x='{label_w}' y='{y + 1}' width='{w:.1f}' height='{bar - 2}' "
                f"fill='{COLORS[j % len(COLORS)]}'/><text x='{label_w + w + 4:.1f}' "
                f"y='{y + bar - 3}' font-size='10'>{_fmt(v)}</text>"
            )
    return "".join(out) + "</svg>"


def item_list(items: list[dict[str, str]], marked: str | None = None, mark: str = "") -> str:
    """A numbered list of items, each its title, its id and its `note`; a title already shown
    higher up says so (catalogues hold different items with one title), and the item whose id is
    `marked` is highlighted with the word `mark` (e.g. the item a search's user clicked).

    Args:
        items: dicts with `item_id`, `title` (may be empty) and optionally `note`.
    """
    first: dict[str, int] = {}  # title -> the position it was first shown at
    out = ["<ol>"]
    for pos, it in enumerate(items, start=1):
        title, item_id = it.get("title") or "", it["item_id"]
        text = f"<code>{escape(item_id)}</code>"
        if title:
            text = f"{escape(title)} {text}"
        notes = [f"same title as no. {first[title]}, another item"] if title in first else []
        if title:
            first.setdefault(title, pos)
        if it.get("note"):
            notes.append(it["note"])
        if notes:
            text += f" <span class='note'>({escape('; '.join(notes))})</span>"
        if marked is not None and item_id == marked:
            text = f"<strong>{text}</strong> <span class='mark'>{escape(mark)}</span>"
        out.append(f"<li>{text}</li>")
    return "".join(out) + "</ol>"


def page(title: str, sections: list[tuple[str, str]], note: str, header: str = "") -> str:
    """The whole page: a title, `header` (HTML, e.g. what was evaluated), `note` and the
    sections as (heading, HTML)."""
    body = "".join(f"<h2>{escape(h)}</h2>{content}" for h, content in sections)
    return (f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>{escape(title)}</title>"
            f"<style>{STYLE}</style></head><body><h1>{escape(title)}</h1>{header}"
            f"<p class='note'>{note}</p>{body}</body></html>\n")  # fmt: skip

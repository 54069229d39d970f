"""reports/evaluation.html: one self-contained page (inline CSS and SVG, nothing loaded from the
network) with the tables and plots a reviewer reads."""

from __future__ import annotations

import html
from typing import Any

COLORS = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2",
          "#7f7f7f", "#bcbd22", "#17becf")  # fmt: skip
STYLE = (
    "body{font-family:sans-serif;max-width:80em;margin:2em auto;padding:0 1em;color:#222}"
    "table{border-collapse:collapse;margin:.5em 0 1.5em}td,th{border:1px solid #ccc;"
    "padding:.25em .5em;text-align:right}th:first-child,td:first-child{text-align:left}"
    ".best{font-weight:bold;background:#eef6ee}.note{color:#555;font-size:.9em}"
)


def escape(x: object) -> str:
    """HTML-escaped text of `x`."""
    return html.escape(str(x))


def _fmt(v: object) -> str:
    return f"{v:.4f}" if isinstance(v, float) else escape(v)


def table(rows: dict[str, dict[str, Any]], columns: list[str], best_higher: bool = True) -> str:
    """Rows keyed by name; the best value of each column is highlighted."""
    best = {}
    for c in columns:
        values: list[float] = [v for r in rows.values() if isinstance(v := r.get(c), float)]
        if values:
            best[c] = max(values) if best_higher else min(values)
    out = ["<table><tr><th></th>" + "".join(f"<th>{escape(c)}</th>" for c in columns) + "</tr>"]
    for name, r in rows.items():
        cells = []
        for c in columns:
            v = r.get(c, "")
            cls = " class='best'" if c in best and v == best[c] else ""
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


def bar_chart(values: dict[str, float], width: int = 640, bar: int = 18) -> str:
    """An inline SVG horizontal bar chart."""
    if not values:
        return ""
    top = max(values.values()) or 1.0
    label_w = 220
    height = bar * len(values) + 10
    out = [f"<svg width='{width}' height='{height}' xmlns='http://www.w3.org/2000/svg'>"]
    for i, (name, v) in enumerate(values.items()):
        y = 5 + i * bar
        w = (width - label_w - 60) * (v / top if v == v else 0)
        out.append(f"<text x='{label_w - 6}' y='{y + bar - 6}' font-size='11' "
                   f"text-anchor='end'>{escape(name)}</text><rect x='{label_w}' y='{y + 2}' "
                   f"width='{w:.1f}' height='{bar - 4}' fill='{COLORS[0]}'/><text "
                   f"x='{label_w + w + 4:.1f}' y='{y + bar - 6}' font-size='11'>{_fmt(v)}</text>")  # fmt: skip
    return "".join(out) + "</svg>"


def page(title: str, sections: list[tuple[str, str]], note: str) -> str:
    body = "".join(f"<h2>{escape(h)}</h2>{content}" for h, content in sections)
    return (f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>{escape(title)}</title>"
            f"<style>{STYLE}</style></head><body><h1>{escape(title)}</h1><p class='note'>{note}</p>"
            f"{body}</body></html>\n")  # fmt: skip

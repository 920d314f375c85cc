"""A waterfall chart of one explanation document, as SVG written directly (no plotting library:
a few rectangles and labels, rendered in microseconds).

For the predicted level: the base value, then each HR feature's contribution (largest first) as a
bar from the running total, then the final probability.
"""

from __future__ import annotations

from typing import Any
from xml.sax.saxutils import escape

WIDTH = 760
ROW = 26
LEFT = 250  # the label column
RIGHT = 90  # the value column
TOP = 56
RAISES = "#d6604d"
LOWERS = "#4393c3"
TOTAL = "#636363"


def _label(entry: dict[str, Any]) -> str:
    value = entry["value"]
    shown = f"{value:.4g}" if isinstance(value, float) else str(value)
    text = f"{entry['feature']} = {shown}"
    return text if len(text) <= 38 else text[:37] + "…"


def render(document: dict[str, Any]) -> str:
    level = document["level"]
    base = float(document["base_values"][level])
    final = float(document["probabilities"][level])
    steps = sorted(
        ((_label(c), float(c["contributions"][level])) for c in document["contributions"]),
        key=lambda s: -abs(s[1]),
    )
    # The scale covers every running total.
    totals = [base]
    for _, delta in steps:
        totals.append(totals[-1] + delta)
    low, high = min(0.0, *totals), max(*totals, final)
    span = (high - low) or 1.0
    plot = WIDTH - LEFT - RIGHT

    def x(value: float) -> float:
        return LEFT + (value - low) / span * plot

    rows = [("base value", base, 0.0, TOTAL)]
    running = base
    for label, delta in steps:
        rows.append((label, running, delta, RAISES if delta > 0 else LOWERS))
        running += delta
    rows.append((f"P({level})", final, 0.0, TOTAL))
    height = TOP + ROW * len(rows) + 30
    model = document["model"]
    out = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{height}" '
        f'viewBox="0 0 {WIDTH} {height}" font-family="sans-serif" font-size="12">',
        f"<title>Why {escape(level)}: TreeSHAP waterfall</title>",
        '<rect width="100%" height="100%" fill="white"/>',
        f'<text x="10" y="22" font-size="15" font-weight="bold">Why {escape(level)} '
        f"(p={final:.2f})</text>",
        f'<text x="10" y="40" fill="#555">{escape(model["name"])} version {escape(str(model["version"]))}'
        f" — exact TreeSHAP contributions to P({escape(level)})</text>",
    ]
    for i, (label, start, delta, color) in enumerate(rows):
        y = TOP + i * ROW
        if delta == 0.0:  # a total: a bar from zero
            x0, x1, shown = x(min(0.0, start)), x(max(0.0, start)), f"{start:.3f}"
        else:
            x0, x1 = sorted((x(start), x(start + delta)))
            shown = f"{delta:+.3f}"
        out.append(f'<text x="{LEFT - 8}" y="{y + 16}" text-anchor="end">{escape(label)}</text>')
        out.append(f'<rect x="{x0:.1f}" y="{y + 4}" width="{max(x1 - x0, 1.0):.1f}" height="{ROW - 8}" '
                   f'fill="{color}"/>')
        out.append(f'<text x="{WIDTH - RIGHT + 8}" y="{y + 16}">{shown}</text>')
    axis = TOP + ROW * len(rows) + 4
    out.append(f'<line x1="{x(0.0):.1f}" y1="{TOP}" x2="{x(0.0):.1f}" y2="{axis}" stroke="#999"/>')
    out.append(f'<text x="{x(0.0):.1f}" y="{axis + 16}" text-anchor="middle" fill="#555">0</text>')
    out.append("</svg>")
    return "\n".join(out)

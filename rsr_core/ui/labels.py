"""Text beside markers that does not overlap: a greedy placement of point labels in an assumed plot size. Pure (no
Streamlit, no plotly): positions are plotly `textposition` values, or None for a label left off (its point still
has its hover card and legend entry).

The plot size is an assumption (the browser decides the real width): take the narrowest plot the page gives the
figure, since labels that do not overlap in a narrow plot do not overlap in a wider one (points move apart,
text keeps its size).
"""
from __future__ import annotations

import math
from collections.abc import Sequence

# plotly textposition -> (dx, dy): where the label box sits relative to the marker, in units of (box width,
# box height) for the box's lower-left corner measured from the marker's centre, plus the marker radius
_POSITIONS = (
    ("top center", -0.5, 0.0, 0, 1),
    ("bottom center", -0.5, -1.0, 0, -1),
    ("middle right", 0.0, -0.5, 1, 0),
    ("middle left", -1.0, -0.5, -1, 0),
    ("top right", 0.0, 0.0, 0.7, 0.7),
    ("top left", -1.0, 0.0, -0.7, 0.7),
    ("bottom right", 0.0, -1.0, 0.7, -0.7),
    ("bottom left", -1.0, -1.0, -0.7, -0.7),
)
CHAR_PX = 6.3  # average width of a character at 11 px
LINE_PX = 14.0
PAD_PX = 2.0


def _scale(values: Sequence[float], lo: float, hi: float, size: float, log: bool) -> list[float]:
    f = (lambda v: math.log10(max(v, 1e-12))) if log else float
    a, b = f(lo), f(hi)
    span = (b - a) or 1.0
    return [(f(v) - a) / span * size for v in values]


def _overlap(a: tuple[float, float, float, float], b: tuple[float, float, float, float]) -> float:
    w = min(a[2], b[2]) - max(a[0], b[0])
    h = min(a[3], b[3]) - max(a[1], b[1])
    return w * h if w > 0 and h > 0 else 0.0


def place_labels(x: Sequence[float], y: Sequence[float], texts: Sequence[str], x_range: tuple[float, float],
                 y_range: tuple[float, float], *, width: float = 330.0, height: float = 330.0, log_x: bool = False,
                 log_y: bool = False, marker_px: float = 7.0, char_px: float = CHAR_PX,
                 line_px: float = LINE_PX) -> list[str | None]:
    """A textposition for each point's label so that no label overlaps another label or any marker and all stay
    inside the plot; None where no position fits (leave that text off). Points are placed in the given order
    (put the important ones first). Non-finite points and empty texts get None."""
    px = _scale(x, *x_range, width, log_x)
    py = _scale(y, *y_range, height, log_y)
    r = marker_px + PAD_PX
    markers = [(a - r, b - r, a + r, b + r) for a, b in zip(px, py) if math.isfinite(a) and math.isfinite(b)]
    placed: list[tuple[float, float, float, float]] = []
    out: list[str | None] = []
    for a, b, text in zip(px, py, texts):
        if not text or not (math.isfinite(a) and math.isfinite(b)):
            out.append(None)
            continue
        w, h = len(str(text)) * char_px + 2 * PAD_PX, line_px + PAD_PX
        choice = None
        for name, fx, fy, ox, oy in _POSITIONS:
            x0, y0 = a + fx * w + ox * r, b + fy * h + oy * r
            box = (x0, y0, x0 + w, y0 + h)
            if box[0] < 0 or box[1] < 0 or box[2] > width or box[3] > height:
                continue
            own = (a - r, b - r, a + r, b + r)
            if any(_overlap(box, m) > 0 for m in markers if m != own) or any(_overlap(box, p) > 0 for p in placed):
                continue
            choice = (name, box)
            break
        if choice is None:
            out.append(None)
            continue
        out.append(choice[0])
        placed.append(choice[1])
    return out

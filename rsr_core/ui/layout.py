"""How the app draws its charts and rows of numbers so that nothing overlaps or is cut, whatever the window width.

- `chart(fig, ...)`: `st.plotly_chart` with a small toolbar shown on hover, and the figure's title placed below
  the toolbar's row (left-aligned, wrapped onto several lines when long), so the toolbar never covers it.
- `metric_row()`: a horizontal container that wraps, for `st.metric(..., width="content")`: each number keeps its
  full width and the row breaks onto a new line instead of truncating values to "2…".
- `button_row()`: the same for buttons, whose labels are never cut.
- `control_row()`: the same for inputs of a fixed width (`width=CONTROL_PX`): side by side where they fit, on
  more lines where they do not, instead of columns squeezed to 80 px.
- `stacking_columns(spec, key)`: columns that go one under the other in a narrow window.
- `page_style()`: narrower side margins in a narrow window (app.py calls it on every run).
"""
from __future__ import annotations

import textwrap

import plotly.graph_objects as go
import streamlit as st

# buttons that a reader of these charts does not need; fewer buttons keep the toolbar on one short row
REMOVED_BUTTONS = ["zoomIn2d", "zoomOut2d", "autoScale2d", "toggleSpikelines", "hoverClosestCartesian",
                   "hoverCompareCartesian", "select2d", "lasso2d"]
SELECT_BUTTONS = ["select2d", "lasso2d"]
TOOLBAR_PX = 34  # the toolbar's row at the top of a chart (its buttons end 27 px below the chart's top)
TITLE_LINE_PX = 19
MULTILINE_SHIFT_PX = 13  # plotly draws a title of several lines this much higher than its `pad` says
TITLE_CHARS = 48  # characters per title line: fits a chart of about 380 px
CONTROL_PX = 200  # width of an input in a control row


def config(selectable: bool = False) -> dict:
    """plotly config: the toolbar only on hover, without the logo and the rarely used buttons (box and lasso
    select are kept where the chart is selectable)."""
    removed = [b for b in REMOVED_BUTTONS if not (selectable and b in SELECT_BUTTONS)]
    return {"displayModeBar": "hover", "displaylogo": False, "modeBarButtonsToRemove": removed}


def wrap_title(text: str, width: int = TITLE_CHARS) -> str:
    """A long title broken onto lines of at most `width` characters (plotly titles do not wrap by themselves)."""
    if not text or "<br>" in text:
        return text or ""
    return "<br>".join(textwrap.wrap(text, width=width, break_long_words=False, break_on_hyphens=False))


def tidy(fig: go.Figure, title_chars: int = TITLE_CHARS) -> go.Figure:
    """The figure with its title under the toolbar's row: left-aligned, wrapped, and a top margin that holds
    both (a figure without a title gets the toolbar's row as its top margin)."""
    title = fig.layout.title.text if fig.layout.title is not None else None
    top = fig.layout.margin.t if fig.layout.margin is not None and fig.layout.margin.t is not None else 0
    if title:
        wrapped = wrap_title(title, title_chars)
        lines = wrapped.count("<br>") + 1
        pad = TOOLBAR_PX + (MULTILINE_SHIFT_PX if lines > 1 else 0)
        fig.update_layout(title={"text": wrapped, "x": 0, "xref": "container", "xanchor": "left", "y": 1,
                                 "yref": "container", "yanchor": "top", "pad": {"t": pad, "l": 10},
                                 "font": {"size": 14}},
                          margin={"t": max(top, TOOLBAR_PX + TITLE_LINE_PX * lines + 14)})
    else:
        fig.update_layout(margin={"t": max(top, TOOLBAR_PX + 4)})
    return fig


def chart(fig: go.Figure, *, key: str | None = None, on_select="ignore", selection_mode=("points", "box", "lasso"),
          container=None, title_chars: int = TITLE_CHARS):
    """Draw a plotly figure full width with `tidy` and `config` (selection arguments as `st.plotly_chart`)."""
    target = container if container is not None else st
    selectable = on_select != "ignore"
    modes = (selection_mode,) if isinstance(selection_mode, str) else tuple(selection_mode)
    return target.plotly_chart(tidy(fig, title_chars), width="stretch", key=key, on_select=on_select,
                               selection_mode=selection_mode,
                               config=config(selectable and any(m in ("box", "lasso") for m in modes)))


def metric_row(gap: str = "medium"):
    """A wrapping row for `st.metric(..., width="content")`: values are never truncated."""
    return st.container(horizontal=True, gap=gap)


def button_row(gap: str = "small"):
    """A wrapping row for buttons (`width="content"`, the default): labels are never cut."""
    return st.container(horizontal=True, gap=gap, vertical_alignment="center")


def control_row(gap: str = "medium"):
    """A wrapping row for inputs drawn with `width=CONTROL_PX` (toggles and checkboxes: their content width),
    aligned on their bottom edge."""
    return st.container(horizontal=True, gap=gap, vertical_alignment="bottom")


NARROW_PX = 1100  # window width under which the page's side margins shrink and `stacking_columns` stack


def page_style() -> None:
    """Styles of every page (call once per run, in app.py): in a window narrower than NARROW_PX the main column
    keeps 1.5 rem side margins instead of Streamlit's 5 rem, so that a 900 px window with the sidebar open gives
    the page about 540 px instead of 430."""
    st.html(f"<style>@media (max-width: {NARROW_PX}px) {{ [data-testid='stMainBlockContainer'] "
            "{ padding-left: 1.5rem; padding-right: 1.5rem; } }</style>")


STACK_BELOW_PX = NARROW_PX  # window width under which `stacking_columns` go one under the other


def stacking_columns(spec, key: str, below: int = STACK_BELOW_PX, gap: str = "medium"):
    """`st.columns(spec)` that stack one under the other in a window narrower than `below` px (Streamlit stacks
    columns only under 640 px): in a 900 px window, two columns of a 440 px page would be 200 px each.
    `key` names the block (a container with that key) that the style applies to: its own columns only, not the
    rows and columns inside them (a `control_row` is a horizontal block too)."""
    block = (f".st-key-{key} > [data-testid='stHorizontalBlock'], "
             f".st-key-{key} > [data-testid='stLayoutWrapper'] > [data-testid='stHorizontalBlock']")
    columns = ", ".join(f"{b.strip()} > [data-testid='stColumn']" for b in block.split(","))
    st.html(f"<style>@media (max-width: {int(below)}px) {{ {block} {{ flex-direction: column; }} {columns} "
            "{ width: 100% !important; flex: 1 1 100% !important; } }</style>")
    with st.container(key=key):
        return st.columns(spec, gap=gap)

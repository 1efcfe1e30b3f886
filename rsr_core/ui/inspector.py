"""The inspector's widgets: pick a trajectory, read it token by token, see why its RSR is what it is, compare.

Each function draws one section from the session state (`rsr_core.ui.state`); computation is in
`rsr_core.analysis.explain` and the figure builders in `rsr_core.ui.inspector_figures`. Chart and table selections
go to the state through callbacks, so every view shares one selection: the highlighted tokens and the text window
of each trajectory.
"""
from __future__ import annotations

import numpy as np
import pandas as pd
import streamlit as st

from rsr_core.analysis import explain
from rsr_core.analysis.segments import THINKING, TOOL_CALLS, answer_boundaries, part_metrics
from rsr_core.analysis.table import text_matches
from rsr_core.data.tables import scores_parts
from rsr_core.data.token_scores import TokenScores
from rsr_core.data.trajectory import tool_call_parts
from rsr_core.ui import state
from rsr_core.ui.inspector_figures import (DOTS_UP_TO, rank_bin_histogram, rank_surprisal_scatter, sliding_rsr_figure,
                                           surprisal_histogram, token_positions, zone_share_table)
from rsr_core.ui.layout import CONTROL_PX, button_row, chart, control_row, metric_row, stacking_columns
from rsr_core.ui.markdown import md_text
from rsr_core.ui.metric_labels import count
from rsr_core.ui.results import table_key
from rsr_core.ui.token_strip import VIEWS, render_token_strip
from rsr_core.analysis.zones import ZoneThresholds

PAGE_SIZES = (500, 1000, 1500, 3000)
DEFAULT_PAGE = 1000  # tokens of text drawn at once: each is an element with its hover card
ALL = "(all)"
SORTABLE = {"rsr": "RSR", "n_tokens": "tokens", "avg_rank_clipped": "mean clipped rank",
            "avg_surprisal": "mean surprisal", "avg_rank": "mean rank (unclipped)", "avg_entropy": "mean entropy",
            "filtered_rsr_token": "filtered token RSR", "rsr_thinking": "RSR of the thinking",
            "rsr_answer": "RSR of the answer", "rsr_tool_calls": "RSR of the tool calls", "teacher": "teacher",
            "problem_id": "problem"}
LIST_COLUMNS = ["trajectory_id", "problem_id", "teacher", "run", "rsr", "n_tokens", "avg_rank_clipped",
                "avg_surprisal", "correct", "truncated"]
MARGIN = 20  # tokens shown before a span or token that the view jumps to

K_TEACHER, K_PROBLEM, K_SORT, K_DESC = "inspector_teacher", "inspector_problem", "inspector_sort", "inspector_desc"
K_SEARCH, K_LIST_PAGE = "inspector_search", "inspector_list_page"
K_PICK, K_LIST, K_LIST_OPEN = "inspector_pick", "inspector_list", "inspector_list_open"
LIST_PAGE = 50  # rows of the trajectory list per page
CURVE_POINTS = 500  # at most about this many windows on the sliding-RSR curve (a 32k-token text: 2,000 at w / 4)
K_CHART_TAB = "inspector_chart_tab"
CHART_TABS = ("Rank × surprisal", "Rank bins", "Surprisal", "Zones")
K_WHY_TAB = "inspector_why_tab"
WHY_TABS = ("Spans that push RSR up most", "RSR along the text", "Tokens that push RSR up most")
LARK_TAB = "Tokens that raise LARK's ρ most"  # where the per-token Brier terms are known
BRIER_COLUMN = st.column_config.NumberColumn("Brier term", format="%.3f",
                                             help="LARK's Brier term of the token: 1 − 2 p(token) + Σ p² over the "
                                                  "student's 50 most likely tokens, renormalised")
PERSISTENT = (K_TEACHER, K_PROBLEM, K_SORT, K_DESC, K_SEARCH, "inspector_view", "inspector_page_size")
K_VIEW, K_PAGE, K_START = "inspector_view", "inspector_page_size", "inspector_start"
K_COMPARE, K_COMPARE_MODE, K_COMPARE_WITH = state.COMPARE, state.COMPARE_MODE, state.COMPARE_WITH
K_COMPARE_STUDENT = "inspector_compare_student"
JUMP_LABEL = "Jump to the span that raises RSR most"
RANKING = ("Spans are ranked by how much they raise this trajectory's RSR: their excess, Σ clipped rank − RSR × Σ "
           "surprisal over the span, i.e. (their own RSR − the trajectory's) × their surprisal. A window with a "
           "high ratio but little surprisal raises RSR less than a more surprising one with a lower ratio, so the "
           "top span need not be the highest point of the window curve.")


# --- pure helpers ----------------------------------------------------------------------------------------------

def window_for(position: int, margin: int = MARGIN) -> int:
    """First token of the text window that shows `position` with `margin` tokens of context before it."""
    return int(max(0, position - margin))


def window_key(tid: str) -> str:
    """Widget key of the span/curve window of one trajectory (each trajectory keeps its own)."""
    return f"inspector_why_window_{tid}"


def default_window(n_tokens: int) -> int:
    """Span/curve window: 64 tokens, smaller for short trajectories (about an eighth of the text, at least 4)."""
    return int(max(4, min(64, n_tokens // 8)))


def list_rows(table: pd.DataFrame, teacher: str = ALL, problem: str = ALL, sort: str = "rsr",
              descending: bool = False, search: str = "") -> np.ndarray:
    """[m] row positions of the trajectory list as shown: filtered by teacher, problem and a search text (a part
    of the trajectory or problem id, case-insensitive), sorted (NaN last; ties: table order)."""
    keep = np.ones(len(table), dtype=bool)
    if teacher != ALL:
        keep &= (table["teacher"].astype(str) == teacher).to_numpy(bool)
    if problem and problem != ALL:
        keep &= (table["problem_id"].astype(str) == problem).to_numpy(bool)
    if search.strip():
        keep &= text_matches([table["trajectory_id"], table["problem_id"]], search)
    rows = np.flatnonzero(keep)
    values = table[sort].iloc[rows].reset_index(drop=True)
    order = values.sort_values(ascending=not descending, kind="stable", na_position="last").index.to_numpy()
    return rows[order].astype(np.int32 if len(table) < 2**31 else np.int64)


@st.cache_resource(show_spinner=False, max_entries=32, hash_funcs={pd.DataFrame: table_key})
def cached_list_rows(table: pd.DataFrame, teacher: str, problem: str, sort: str, descending: bool,
                     search: str) -> np.ndarray:
    """`list_rows`, cached per table and filters: sorting 165,000 rows on every rerun of the page took a tenth
    of a second or more (shared: do not change it)."""
    return list_rows(table, teacher, problem, sort, descending, search)


def curve_stride(n_tokens: int, window: int, points: int = CURVE_POINTS) -> int:
    """Step between the windows of the sliding-RSR curve: a quarter window, wider for a text so long that the
    curve would have more than about `points` windows (each point is a selectable marker the browser draws)."""
    w = max(1, min(int(window), int(n_tokens)))
    return int(max(w // 4 or 1, -(-(int(n_tokens) - w) // max(1, points))))


def list_page(table: pd.DataFrame, rows: np.ndarray, page: int, size: int = LIST_PAGE) -> pd.DataFrame:
    """The list's rows [page * size, (page + 1) * size) (page clipped to the last one), its columns only."""
    last = max(0, (len(rows) - 1) // size)
    page = min(max(0, int(page)), last)
    shown = table.iloc[rows[page * size:(page + 1) * size]]
    return shown[[c for c in LIST_COLUMNS if c in shown]].reset_index(drop=True)


# --- callbacks (run before the script; they only touch the state) ---------------------------------------------

def jump_to(tid: str, start: int, stop: int, n_tokens: int, page: int) -> None:
    """Outline tokens [start, stop) and move the text window to them."""
    state.set_selected_tokens(tid, range(start, stop))
    state.set_window_start(tid, window_for(start))


def _on_list_select(ids: list[str]) -> None:
    rows = state.get(K_LIST).selection.rows
    if rows and rows[0] < len(ids):
        state.select_trajectory(ids[rows[0]])


def _on_start(tid: str) -> None:
    state.set_window_start(tid, state.get(K_START))


def _on_scatter(key: str, tid: str, n_tokens: int, page: int) -> None:
    positions = token_positions(state.get(key).selection.points)
    state.set_selected_tokens(tid, positions)
    start = state.window_start(tid)
    if positions and not any(start <= p < start + page for p in positions):
        state.set_window_start(tid, window_for(positions[0]))


def _on_curve(key: str, tid: str, n_tokens: int, page: int) -> None:
    points = state.get(key).selection.points
    if points and points[0].get("customdata"):
        a, b = (int(v) for v in points[0]["customdata"][:2])
        jump_to(tid, a, b, n_tokens, page)


def _on_row(key: str, frame: pd.DataFrame, tid: str, n_tokens: int, page: int) -> None:
    rows = state.get(key).selection.rows
    if rows and rows[0] < len(frame):
        row = frame.iloc[rows[0]]
        a = int(row["start"] if "start" in row else row["position"])
        b = int(row["stop"] if "stop" in row else a + 1)
        jump_to(tid, a, b, n_tokens, page)


def _clear_highlight(tid: str) -> None:
    state.set_selected_tokens(tid, [])


# --- sections --------------------------------------------------------------------------------------------------

def pick_trajectory(table: pd.DataFrame) -> str | None:
    """Filters, a search box and a sortable list shown one page at a time (click a row), so that 165,000
    trajectories stay quick; returns the chosen trajectory id."""
    teachers = sorted(str(x) for x in table["teacher"].unique())
    width = CONTROL_PX - 20
    with control_row():
        teacher = st.selectbox("Teacher", [ALL] + teachers, key=state.keep(K_TEACHER), width=width)
        search = st.text_input("Search", key=state.keep(K_SEARCH, ""), placeholder="trajectory or problem id",
                               width=width)
        problem = st.text_input("Problem", key=state.keep(K_PROBLEM, ""), placeholder="exact problem id",
                                width=width)
        sort = st.selectbox("Sort by", [c for c in SORTABLE if c in table], format_func=SORTABLE.get,
                            key=state.keep(K_SORT),
                            width=width)
        descending = st.toggle("Descending", key=state.keep(K_DESC))
    state.remember(K_TEACHER, K_SEARCH, K_PROBLEM, K_SORT, K_DESC)
    rows = cached_list_rows(table, teacher, problem.strip(), sort, descending, search)
    if not len(rows):
        st.warning("No trajectory matches these filters.")
        return None
    tid = state.selected_trajectory()
    filtered = teacher != ALL or problem.strip() or search.strip()
    if tid is None or filtered and tid not in set(table["trajectory_id"].iloc[rows].astype(str)):
        tid = str(table["trajectory_id"].iloc[rows[0]])
    state.select_trajectory(tid)
    pages = max(1, (len(rows) + LIST_PAGE - 1) // LIST_PAGE)
    # drawn only while open (opening it reruns the page), so a collapsed list costs a rerun nothing
    box = st.expander(f"Trajectories ({len(rows):,}): click a row to open it", expanded=False, key=K_LIST_OPEN,
                      on_change="rerun")
    if box.open is not False:
        with box:
            _list_view(table, rows, pages)
    row = state.trajectory_row(tid)
    st.markdown(f"**{md_text(tid)}** · {md_text(row['teacher'])} · problem {md_text(row['problem_id'])} · "
                f"RSR {row['rsr']:.3f} · "
                f"{count(row['n_tokens'], 'token')}")
    return tid


def _list_view(table: pd.DataFrame, rows: np.ndarray, pages: int) -> None:
    """One page of the trajectory list (rows of `table` in list order; click a row to open it), with the page
    number."""
    page = 0
    if pages > 1:
        page = int(st.number_input(f"Page (of {pages:,}; {LIST_PAGE} rows each)", 1, pages, 1,
                                   key=K_LIST_PAGE)) - 1
    shown = list_page(table, rows, page)
    ids = shown["trajectory_id"].astype(str).tolist()
    st.dataframe(shown, key=K_LIST, on_select=lambda: _on_list_select(ids), selection_mode="single-row",
                 hide_index=True, height=240, width="stretch",
                 column_config={"rsr": st.column_config.NumberColumn("RSR", format="%.3f"),
                                "avg_rank_clipped": st.column_config.NumberColumn(format="%.2f"),
                                "avg_surprisal": st.column_config.NumberColumn(format="%.3f")})


def part_positions(ts: TokenScores, messages: list[dict]) -> tuple[np.ndarray, list[int], list[int]]:
    """([T] part of each token (`segments.token_parts`), positions where an answer follows a turn's thinking,
    positions where a turn's tool calls begin) of a trajectory."""
    codes = scores_parts(messages, ts)
    tools = [int(t) for t in np.flatnonzero(codes == TOOL_CALLS)
             if t == 0 or codes[t - 1] != TOOL_CALLS or ts.turn[t - 1] != ts.turn[t]]
    return codes, answer_boundaries(codes == THINKING, ts.turn), tools


def message_text(m: dict) -> str:
    """A context message as the inspector shows it: a tool result with its call id, a tool call by name."""
    head = m["role"] + (f" ({m['tool_call_id']})" if m.get("tool_call_id") else "")
    calls = "".join(f"\n→ {name}({args})" for name, args in map(tool_call_parts, m.get("tool_calls") or []))
    return f"{head}: {m['content']}{calls}"


def between_turns(messages: list[dict]) -> dict[int, str]:
    """{assistant turn k >= 1: the messages between turn k - 1 and turn k} (tool results, a user's reply)."""
    out, turn, pending = {}, -1, []
    for m in messages:
        if m["role"] == "assistant":
            if turn >= 0 and pending:
                out[turn + 1] = "\n".join(pending)
            turn, pending = turn + 1, []
        elif turn >= 0:
            pending.append(message_text(m))
    return out


def prompt_view(conversation: dict) -> None:
    """The context the student reads before the first response (system prompt, user messages) and the tools the
    record offers, collapsed."""
    messages = conversation["messages"]
    first = next((i for i, m in enumerate(messages) if m["role"] == "assistant"), len(messages))
    context, tools = messages[:first], conversation.get("tools") or []
    if not context and not tools:
        return
    with st.expander("Prompt", expanded=False):
        for m in context:
            st.markdown(f"**{md_text(m['role'])}**" + (" (system prompt)" if m["role"] == "system" else ""))
            st.text(m["content"])
        if tools:
            names = [str((t.get("function") or t).get("name", "?")) for t in tools]
            st.markdown(f"**tools offered** ({len(tools)}): {md_text(', '.join(names))}")
            st.json(tools, expanded=False)


def parts_view(ts: TokenScores, codes: np.ndarray, r_max: int) -> None:
    """RSR, mean surprisal and mean clipped rank of the thinking, the answer and the tool calls, side by side."""
    if len(np.unique(codes)) < 2:
        return
    parts = part_metrics(ts.surprisal, ts.rank, codes, r_max)
    st.markdown("**Thinking, answer" + (" and tool calls" if (codes == TOOL_CALLS).any() else "")
                + "**: where does the trace lose the student?")
    st.dataframe(parts, hide_index=True, width="stretch", key="inspector_parts",
                 column_config={"rsr": st.column_config.NumberColumn("RSR", format="%.3f"),
                                "avg_surprisal": st.column_config.NumberColumn("mean surprisal", format="%.3f"),
                                "avg_rank_clipped": st.column_config.NumberColumn("mean clipped rank",
                                                                                  format="%.2f")})


def answer_label(correct) -> str:
    """A trajectory's correctness in a word: correct, wrong or unknown."""
    return "unknown" if correct is None or pd.isna(correct) else ("correct" if correct else "wrong")


def metrics_row(row: pd.Series, r_max: int) -> None:
    with metric_row():
        st.metric("RSR", f"{row['rsr']:.3f}", width="content",
                  help=f"RSR of this trajectory (Eq. 7): Σ min(rank, {r_max}) / Σ surprisal; lower is better")
        st.metric("tokens", f"{int(row['n_tokens']):,}", width="content")
        st.metric("mean clipped rank", f"{row['avg_rank_clipped']:.2f}", width="content")
        st.metric("mean surprisal", f"{row['avg_surprisal']:.3f}", help="nats", width="content")
        st.metric("mean rank (unclipped)", f"{row['avg_rank']:.1f}", width="content")
        lark = row.get("lark_rho")
        if lark is not None and pd.notna(lark):
            st.metric("LARK ρ", f"{float(lark):.3f}", width="content",
                      help="LARK's rho (arXiv 2605.30651): mean top-50 Brier score / mean surprisal")
        st.metric("answer", answer_label(row.get("correct")), width="content")
    cov = row.get("coverage")
    if cov is not None and pd.notna(cov):
        st.caption(f"coverage {float(cov):.1%}: share of the teacher's response characters that were scored")
    if bool(row.get("truncated", False)):
        st.warning(f"This conversation was longer than the maximum length and was truncated: its numbers cover "
                   f"only the first {int(row.get('n_context', 0)):,} tokens of the rendered conversation"
                   + (f" ({float(cov):.1%} of the response)." if cov is not None and pd.notna(cov) else "."))
    elif cov is not None and pd.notna(cov) and float(cov) < 1.0:
        st.warning(f"Only {float(cov):.1%} of the response's characters were scored.")


def text_view(tid: str, ts: TokenScores, r_max: int, thresholds: ZoneThresholds, worst: explain.Span | None,
              answers: list[int] = (), tools: list[int] = (), context: dict[int, str] | None = None) -> int:
    """The token strip of one window of the text, with the view selector and the pager. Returns the page size."""
    n = len(ts)
    view = st.radio("Colour tokens by", list(VIEWS), format_func=VIEWS.get, horizontal=True, key=state.keep(K_VIEW),
                    help="Zone thresholds and r_max are in the sidebar; hover a token for all its values.")
    state.remember(K_VIEW)
    with control_row():
        page = int(st.selectbox("Tokens per page", PAGE_SIZES, index=PAGE_SIZES.index(DEFAULT_PAGE),
                                key=state.keep(K_PAGE), width=CONTROL_PX - 60))
        state.remember(K_PAGE)
        start = min(state.window_start(tid), max(n - 1, 0))
        if n > page:
            state.put(K_START, start)
            st.number_input("First token", min_value=0, max_value=max(n - 1, 0), step=page, key=K_START,
                            on_change=_on_start, args=(tid,), help=f"Pages of {page} tokens; 0-based positions.",
                            width=CONTROL_PX - 20)
        else:
            start = 0
        st.button(JUMP_LABEL, key="inspector_jump_worst", disabled=worst is None,
                  on_click=(lambda: jump_to(tid, worst.start, worst.stop, n, page)) if worst else None,
                  help="Outline the span at the top of *Spans that push RSR up most* below and move the text "
                       "to it. " + RANKING)
    if n <= page:
        st.caption(f"All {count(n, 'token')} on one page.")
    highlight = state.selected_tokens(tid)
    if highlight:
        shown = sum(start <= p < start + page for p in highlight)
        with button_row():
            st.caption(f"{count(len(highlight), 'token')} outlined, {shown:,} on this page. "
                       + outlined_span_text(ts, highlight, r_max, worst))
            st.button("Clear", key="inspector_clear", on_click=_clear_highlight, args=(tid,))
    with st.container(key="inspector_text"):  # no fixed height: a scroll box would clip the hover cards
        render_token_strip(ts, colour_by=view, r_max=r_max, thresholds=thresholds, highlight=highlight,
                           start=start, stop=start + page, answer_starts=answers, tool_starts=tools,
                           between_turns=context)
    return page


def outlined_span_text(ts: TokenScores, positions: list[int], r_max: int, worst: explain.Span | None) -> str:
    """What an outlined run of tokens does to RSR, and for the top span why it is the top one."""
    a, b = positions[0], positions[-1] + 1
    if len(positions) < 2 or b - a != len(positions):
        return ""
    sp = explain.span_at(ts.surprisal, ts.rank, a, b, r_max)
    top = worst is not None and (worst.start, worst.stop) == (a, b)
    text = (f"Tokens {a:,}-{b - 1:,}" + (", the span that raises RSR most" if top else "") +
            f": excess {sp.excess:+.1f}; leaving them out would make RSR {sp.rsr_without:.3f}. Their own RSR is "
            f"{sp.rsr:.2f}.")
    return text + (" " + RANKING if top else "")


def token_charts(tid: str, ts: TokenScores, r_max: int, thresholds: ZoneThresholds, rsr: float, page: int) -> None:
    """The rank × surprisal scatter (selectable) and the histograms."""
    n = len(ts)
    # only the open tab is drawn (switching tabs reruns the page): four charts of a long text at every rerun
    # were a second of the browser's time
    tabs = st.tabs(list(CHART_TABS), key=K_CHART_TAB, on_change="rerun")
    with tabs[0]:
        if tabs[0].open is not False:
            key = f"inspector_scatter_{tid}"
            start = min(state.window_start(tid), max(n - 1, 0))
            chart(rank_surprisal_scatter(ts, r_max, thresholds, rsr, window=(start, start + page)), key=key,
                  on_select=lambda: _on_scatter(key, tid, n, page), selection_mode=("points", "box", "lasso"))
            dots = ("Each dot is a token" if n <= DOTS_UP_TO else
                    f"Grey: where all {n:,} tokens lie (darker: more); each dot is a token of the page of text "
                    f"shown (tokens {start:,}-{min(n, start + page) - 1:,})")
            st.caption(f"{dots}. Dotted lines: rank = c · surprisal (tokens on them have r/s = c); solid: this "
                       "trajectory's RSR. Dots above it push RSR up. Select dots (click, box or lasso) to outline "
                       "the tokens in the text.")
    with tabs[1]:
        if tabs[1].open is not False:
            chart(rank_bin_histogram(ts), key=f"inspector_bins_{tid}")
            st.caption("GLTR's fingerprint with 1-based ranks: GLTR's top bin '< 10' (0-based) is our 1-10.")
    with tabs[2]:
        if tabs[2].open is not False:
            chart(surprisal_histogram(ts, thresholds), key=f"inspector_surprisal_{tid}")
    with tabs[3]:
        if tabs[3].open is not False:
            st.dataframe(zone_share_table(ts, r_max, thresholds), hide_index=True, width="stretch",
                         column_config={c: st.column_config.NumberColumn(format="%.1f") for c in
                                        ("% tokens", "% of Σ clipped rank", "% of Σ surprisal")})
            st.caption("A zone whose share of Σ clipped rank exceeds its share of Σ surprisal pushes RSR up.")


def why_this_score(tid: str, ts: TokenScores, r_max: int, page: int, window: int,
                   answers: list[int] = ()) -> None:
    """The decomposition with the actual numbers; the spans, the curve along the text and the tokens that push RSR
    up, one tab drawn at a time."""
    n = len(ts)
    d = explain.decompose(ts.surprisal, ts.rank, r_max)
    st.markdown(f"#### Why this score\n**{d.formula()}** over {count(d.n_tokens, 'token')} "
                f"(mean clipped rank {d.mean_rank_clipped:.2f} / mean surprisal {d.mean_surprisal:.3f} nats)"
                + (f"; {count(d.n_clipped, 'token')} ranked beyond r_max "
                   f"{'counts' if d.n_clipped == 1 else 'count'} as {r_max}." if d.n_clipped else "."))
    st.caption("A token's excess = clipped rank − RSR × surprisal (the excesses sum to 0). Positive excess pushes "
               "RSR up: the token is ranked further down than its surprisal warrants. Leaving a token or span out "
               "changes RSR by −excess / (Σ surprisal of the rest).")
    st.number_input("Window (tokens)", min_value=2, max_value=max(2, n), step=8, key=window_key(tid),
                    help="Width of the spans and of the curve's windows.", width=CONTROL_PX)
    # only the open tab is drawn (choosing one reruns the page): the curve and two tables under the text were
    # half a second of the browser's time at every opening of a trajectory
    lark = ts.lark_brier is not None
    spans_tab, curve_tab, tokens_tab, *lark_tab = st.tabs(list(WHY_TABS) + ([LARK_TAB] if lark else []),
                                                          key=K_WHY_TAB, on_change="rerun")
    top = explain.top_spans(ts.surprisal, ts.rank, r_max, window, k=5)
    with spans_tab:
        if spans_tab.open is not False:
            _spans_table(tid, ts, top, d.rsr, window, page)
    with curve_tab:
        if curve_tab.open is not False:
            _window_curve(tid, ts, top, d.rsr, r_max, window, page, answers)
    with tokens_tab:
        if tokens_tab.open is not False:
            _tokens_table(tid, ts, r_max, page)
    for tab in lark_tab:
        with tab:
            if tab.open is not False:
                _brier_table(tid, ts, page)


def _spans_table(tid: str, ts: TokenScores, top: list[explain.Span], rsr: float, window: int, page: int) -> None:
    n = len(ts)
    spans = explain.span_table(top, ts.tokens)
    st.caption("The windows that push RSR up most, by excess; click a row to read it. " + RANKING)
    if spans.empty:
        st.caption("No window pushes RSR up (the text is shorter than the window, or uniform).")
        return
    key = f"inspector_spans_{tid}_{window}"
    st.dataframe(spans, key=key, hide_index=True, width="stretch", selection_mode="single-row",
                 on_select=lambda: _on_row(key, spans, tid, n, page),
                 column_order=["start", "stop", "excess", "rsr_without", "rsr", "text"],
                 column_config={"rsr": st.column_config.NumberColumn("own RSR", format="%.2f",
                                                                     help="The span's own RSR (its point "
                                                                          "on the curve)"),
                                "excess": st.column_config.NumberColumn(
                                    "excess", format="%+.1f", help="How much the span raises RSR, the "
                                    "ranking: Σ clipped rank − RSR × Σ surprisal over the span"),
                                "rsr_without": st.column_config.NumberColumn(
                                    "RSR without it", format="%.3f",
                                    help=f"The trajectory's RSR ({rsr:.3f}) with the span left out"),
                                "text": st.column_config.TextColumn("text", width="large")})


def _window_curve(tid: str, ts: TokenScores, top: list[explain.Span], rsr: float, r_max: int, window: int,
                  page: int, answers: list[int]) -> None:
    n = len(ts)
    curve = explain.sliding_rsr(ts.surprisal, ts.rank, r_max, window, stride=curve_stride(n, window))
    marked = state.selected_tokens(tid)
    span = (marked[0], marked[-1] + 1) if marked else None
    label = "outlined: raises RSR most" if top and span == (top[0].start, top[0].stop) else "outlined"
    key = f"inspector_curve_{tid}_{window}"
    chart(sliding_rsr_figure(curve, rsr, window, span, list(answers), span_label=label), key=key,
          on_select=lambda: _on_curve(key, tid, n, page), selection_mode=("points", "box"))
    st.caption("Each point is a window's own RSR; click one to outline that window and show it in the text "
               "above. " + RANKING)


def _tokens_table(tid: str, ts: TokenScores, r_max: int, page: int) -> None:
    n = len(ts)
    tokens = explain.token_contributions(ts.surprisal, ts.rank, ts.tokens, r_max, k=10)
    if ts.lark_brier is not None:
        tokens["lark_brier"] = ts.lark_brier[tokens["position"].to_numpy()]
    st.caption("The single tokens that push RSR up most, by excess; click a row to read it.")
    key = f"inspector_tokens_{tid}"
    st.dataframe(tokens, key=key, hide_index=True, width="stretch", selection_mode="single-row",
                 on_select=lambda: _on_row(key, tokens, tid, n, page),
                 column_config={"surprisal": st.column_config.NumberColumn(format="%.3f"),
                                "excess": st.column_config.NumberColumn(format="%+.1f"),
                                "rsr_without": st.column_config.NumberColumn("RSR without it", format="%.4f"),
                                "lark_brier": BRIER_COLUMN})


def _brier_table(tid: str, ts: TokenScores, page: int) -> None:
    """LARK's rho taken apart the same way: the tokens whose Brier term raises it most."""
    n = len(ts)
    d = explain.lark_decompose(ts.surprisal, ts.lark_brier)
    st.markdown(f"**{d.formula()}** over {count(d.n_tokens, 'token')}")
    st.caption("A token's Brier term is 1 − 2 p(token) + Σ p² over the student's 50 most likely tokens, "
               "renormalised (p(token) = 0 when it is not among them): 0 for a sure, right guess, up to 2. Its "
               "excess = Brier term − ρ × surprisal; positive raises ρ (LARK prefers higher). Click a row to read "
               "it.")
    tokens = explain.brier_contributions(ts.surprisal, ts.lark_brier, ts.tokens, k=10)
    key = f"inspector_brier_{tid}"
    st.dataframe(tokens, key=key, hide_index=True, width="stretch", selection_mode="single-row",
                 on_select=lambda: _on_row(key, tokens, tid, n, page),
                 column_config={"surprisal": st.column_config.NumberColumn(format="%.3f"),
                                "lark_brier": BRIER_COLUMN,
                                "excess": st.column_config.NumberColumn(format="%+.3f"),
                                "rho_without": st.column_config.NumberColumn("ρ without it", format="%.4f")})


def _side(label: str, row: pd.Series | None, ts: TokenScores, view: str, r_max: int, thresholds: ZoneThresholds,
          start: int, page: int, reference: float | None = None) -> None:
    st.markdown(label)
    if row is not None:
        delta = None if reference is None or not np.isfinite(reference) else f"{row['rsr'] - reference:+.3f}"
        with metric_row():
            st.metric("RSR", f"{row['rsr']:.3f}", delta=delta, delta_color="inverse", width="content")
            st.metric("tokens", f"{int(row['n_tokens']):,}", width="content")
            st.metric("mean surprisal", f"{row['avg_surprisal']:.3f}", width="content")
            if pd.notna(row.get("lark_rho", float("nan"))):
                st.metric("LARK ρ", f"{float(row['lark_rho']):.3f}", width="content")
            st.metric("answer", answer_label(row.get("correct")), width="content")
    with st.container():  # no fixed height: a scroll box would clip the hover cards
        render_token_strip(ts, colour_by=view, r_max=r_max, thresholds=thresholds, start=start, stop=start + page,
                           legend=False)


def side_by_side(tid: str, ts: TokenScores, table: pd.DataFrame, r_max: int, thresholds: ZoneThresholds,
                 page: int) -> None:
    """Two trajectories of the same problem, or this trajectory under two students, in aligned columns."""
    if not st.toggle("Side by side", key=K_COMPARE,
                     help="Another trajectory of the same problem, or this one under another student."):
        return
    view = state.get(K_VIEW, "rank")
    mode = st.radio("Compare with", ["trajectory", "student"], horizontal=True, key=K_COMPARE_MODE,
                    format_func={"trajectory": "another trajectory of this problem",
                                 "student": "this trajectory under another student"}.get)
    row = state.trajectory_row(tid)
    if mode == "trajectory":
        pid = row["problem_id"]
        same = table[(table["problem_id"] == pid) & (table["trajectory_id"] != tid)]
        if same.empty:
            st.info(f"No other scored trajectory of problem {md_text(pid)}.")
            return
        labels = same.set_index("trajectory_id")
        other = st.selectbox("Second trajectory", same["trajectory_id"].tolist(), key=K_COMPARE_WITH,
                             format_func=lambda t: f"{t} · {labels.at[t, 'teacher']} · RSR {labels.at[t, 'rsr']:.3f}")
        right_label = f"**{md_text(other)}** · {md_text(labels.at[other, 'teacher'])}"
        right_row, right_ts = state.trajectory_row(other), state.trajectory_scores(other)
        left_label = f"**{md_text(tid)}** · {md_text(row['teacher'])}"
    else:
        students = [s for s in state.other_students() if state.has_results(tid, s)]
        if not students:
            st.info("No other student has scores for this trajectory yet. Pick another student in the sidebar and "
                    "press Score (each student's results stay in the dataset's store).")
            return
        other = st.selectbox("Second student", students, key=K_COMPARE_STUDENT)
        left_label = f"**{md_text(state.current_student())}**"
        right_label = f"**{md_text(other)}**"
        right_row, right_ts = state.trajectory_row(tid, other), state.trajectory_scores(tid, other)
    if right_ts is None:
        st.info("The per-token data of the second one is not in the store.")
        return
    longest = max(len(ts), len(right_ts))
    start = 0
    if longest > page:
        start = int(st.number_input("First token (both sides)", min_value=0, max_value=longest - 1, step=page,
                                    value=0, key="inspector_compare_start"))
    left, right = stacking_columns(2, key="inspector_compare_sides")
    with left:
        _side(left_label, row, ts, view, r_max, thresholds, start, page)
    with right:
        _side(right_label, right_row, right_ts, view, r_max, thresholds, start, page,
              reference=float(row["rsr"]) if row is not None else None)

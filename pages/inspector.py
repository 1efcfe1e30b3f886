"""Inspector: one trajectory token by token, why its RSR is what it is, and side-by-side comparisons."""
import streamlit as st

from rsr_core.analysis import explain
from rsr_core.ui import edit_mode
from rsr_core.ui import inspector as ui
from rsr_core.ui import state
from rsr_core.ui.layout import stacking_columns
from rsr_core.ui.navigation import ensure_app_runs

ensure_app_runs()

st.title("Inspector")
table = state.scored_table_or_stop()

tid = ui.pick_trajectory(table)
if tid is None:
    st.stop()
row = state.trajectory_row(tid)
r_max, thresholds = state.current_r_max(), state.current_thresholds()
ui.metrics_row(row, r_max)
conversation = state.trajectory_conversation(tid)
messages = conversation["messages"]
ui.prompt_view(conversation)
ts = state.trajectory_scores(tid)
if ts is None:
    st.info("The store holds this trajectory's metrics but not its per-token data, so there is no text to show. "
            "Score it again into a store that keeps tokens to read it here.")
    st.stop()
parts, answers, tool_calls = ui.part_positions(ts, messages)
ui.parts_view(ts, parts, r_max)

window = min(int(state.get(ui.window_key(tid)) or ui.default_window(len(ts))), max(2, len(ts)))
state.put(ui.window_key(tid), window)
spans = explain.top_spans(ts.surprisal, ts.rank, r_max, window, k=1)

left, right = stacking_columns([3, 2], key="inspector_main")  # one under the other in a narrow window
with left:
    page = ui.text_view(tid, ts, r_max, thresholds, spans[0] if spans else None, answers, tool_calls,
                        ui.between_turns(messages))
with right:
    ui.token_charts(tid, ts, r_max, thresholds, float(row["rsr"]), page)
ui.why_this_score(tid, ts, r_max, page, window, answers)
st.divider()
edit_mode.edit_section(tid, ts, messages, r_max, thresholds, state.get(ui.K_VIEW, "rank"))
st.divider()
ui.side_by_side(tid, ts, table, r_max, thresholds, page)

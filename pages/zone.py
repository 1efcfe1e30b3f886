"""Teaching page: the zone of proximal development, the idea behind the Rank-Surprisal Ratio.

Runs standalone (`streamlit run pages/zone.py`) or inside the app's `st.navigation`. Reads shared settings through
`rsr_core.ui.state` with defaults; computation lives in `rsr_core.analysis.simulation` and `rsr_core.analysis.zones`.
"""
from __future__ import annotations

import pandas as pd
import streamlit as st

from rsr_core.analysis.metrics import clipped_rank, trajectory_metrics
from rsr_core.ui import state
from rsr_core.ui.layout import CONTROL_PX, chart, control_row, metric_row
from rsr_core.ui.markdown import md_message
from rsr_core.ui.navigation import ensure_app_runs
from rsr_core.ui.token_strip import VIEWS, render_token_strip
from rsr_core.ui.zone_figures import (SOURCE_LABELS, PlanePoint, cartoon_display, illustrative_next_token_figure,
                                      rank_surprisal_plane, simulation_display, simulation_points, simulation_table,
                                      student_distribution_figure, zone_label)
from rsr_core.analysis.zones import ZoneThresholds, zone_summary, ZONE_LABELS
from rsr_core.analysis.simulation import (SimulationConfig, place_token, rsr_contribution, sample_trajectory, simulate,
                                     student_distribution)

ensure_app_runs()

CARTOON = {  # demo trajectory id -> (solution, the cartoon's reading)
    "p01-table-of-values": ("table of values", "too familiar"),
    "p01-complete-the-square": ("completing the square", "just right"),
    "p01-calculus": ("calculus", "too informative"),
}

REWRITE = "p01-calculus"  # the guided rewrite's trajectory
K_REWRITE = "zpd_rewrite_scores"

TOKEN_PROBABILITIES = (0.0001, 0.0002, 0.0005, 0.001, 0.002, 0.003, 0.005, 0.007, 0.01, 0.015, 0.02, 0.03, 0.05,
                       0.07, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95, 0.99)


SHARED_THRESHOLD_KEYS = (state.ZONE_S0, state.ZONE_K)  # set by the app's sidebar when it owns them


def zone_thresholds() -> ZoneThresholds:
    """The app's zone thresholds when it sets them; otherwise editable here (page-local widgets, defaults 1.0 / 10)."""
    if all(state.get(k) is not None for k in SHARED_THRESHOLD_KEYS):
        return state.current_thresholds()
    with st.expander("Zone thresholds (used by every zone view on this page)"), control_row():
        s0 = st.number_input("surprisal threshold (nats)", 0.05, 10.0,
                             float(state.get(state.ZONE_S0, 1.0)), 0.05, key="zpd_s0", width=CONTROL_PX,
                             help="Tokens below it are familiar; at or above it, informative.")
        k = st.number_input("rank threshold", 1, 1000, int(state.get(state.ZONE_K, 10)), 1,
                            key="zpd_k", width=CONTROL_PX,
                            help="Informative tokens ranked at or above it (1 = top) are in the zone; below, alien.")
    return ZoneThresholds(float(s0), int(k))


def intro() -> None:
    st.title("The zone of proximal development")
    st.markdown(
        "A student learns most from what it can *almost* produce itself. RSR measures this per token with two "
        "numbers the student assigns to the teacher's token:\n\n"
        "- **rank**: where the token sits among everything the student might say next (1 = its top choice). "
        "A good rank means *relative familiarity*: the step is aligned with how the student already thinks.\n"
        "- **surprisal** = −ln p: how improbable the token is in absolute terms. High surprisal means "
        "*absolute unfamiliarity*: there is something to learn.\n\n"
        "The trajectory's RSR is Σ min(rank, r_max) / Σ surprisal. It is **low** when tokens are improbable yet "
        "ranked near the top: a stretch, but a reachable one. Tokens that are both probable and top-ranked teach "
        "little (*too familiar*); tokens ranked far down are *alien*, too far from the student to be absorbed.")
    chart(illustrative_next_token_figure(), key="zpd_chart_illustrative")
    st.caption(
        "Illustrative numbers, not measured. After \"the mean is 32.\" the student expects \"Therefore\" or \"So\": "
        "continuing with them teaches little. \"Alternatively\" and \"Actually\" are improbable (about 2 %, "
        "surprisal near 4 nats) but ranked 5th and 6th: the student nearly reaches for them. \"Wait\" and "
        "\"Admittedly\" are more improbable still and ranked far down.")


def simulation_section(r_max: int, thresholds: ZoneThresholds) -> dict:
    st.header("The paper's simulation")
    st.markdown(
        "The student's next-token distribution over a toy vocabulary of 50 tokens is a mixture "
        "Z = w·Z_A + (1−w)·Z_B of two Zipf distributions: a major mode Z_A and a minor mode Z_B, the same "
        "shape moved by a few token ids. Tokens sampled from four sources are scored under Z. The minor mode "
        "X_B gives tokens that are improbable yet ranked near the top, and the lowest ratio.")
    with control_row():
        weight = st.slider("mixture weight w", 0.50, 0.99, step=0.01, key=state.keep("zpd_weight", 0.80),
                           help="Weight of the major mode Z_A.", width=CONTROL_PX)
        alpha = st.slider("Zipf exponent α", 1.2, 3.5, step=0.1, key=state.keep("zpd_alpha", 2.3),
                          help="Larger: both modes more peaked.", width=CONTROL_PX)
        shift = st.slider("shift (token ids)", 1, 49, step=1, key=state.keep("zpd_shift", 15),
                          help="How far Z_B is moved from Z_A (cyclically).", width=CONTROL_PX)
        n_samples = st.select_slider("samples per source", [1_000, 2_000, 5_000, 10_000, 20_000, 50_000],
                                     key=state.keep("zpd_samples", 10_000), width=CONTROL_PX)
        seed = st.number_input("seed", 0, 1_000_000, step=1, key=state.keep("zpd_seed", 0), width=CONTROL_PX)
    state.remember("zpd_weight", "zpd_alpha", "zpd_shift", "zpd_samples", "zpd_seed")
    cfg = SimulationConfig(alpha=float(alpha), weight=float(weight), shift=int(shift), n_samples=int(n_samples),
                           seed=int(seed))
    stats = simulate(cfg)
    chart(student_distribution_figure(cfg), key="zpd_chart_distribution")
    # the table full width, one column per source: the paper's numbers sit under this run's
    table = simulation_display(simulation_table(stats))
    with st.container(key="zpd_simulation"):  # the browser test finds the table by this key
        st.dataframe(table, hide_index=True, width="stretch",
                     column_config={"quantity": st.column_config.TextColumn(""),
                                    **{f"X_{s}": st.column_config.NumberColumn(f"X_{s}", format="%.2f",
                                                                              help=SOURCE_LABELS[s])
                                       for s in "ABCD"}})
    st.caption(
        "Sources: " + "; ".join(SOURCE_LABELS[s] for s in "ABCD") + ". The paper's table (w = 0.8, α = 2.3, "
        "10,000 samples) is reproduced by a cyclic shift of 15 token ids; X_C is a Zipf(α) over a fixed random "
        "permutation of the vocabulary. The paper's RSR_token is the mean of per-token rank/surprisal; the last "
        "row is the ratio of sums that RSR (Eq. 7) uses. Both put X_B lowest. Ranks here never exceed 50, so "
        "clipping does not apply.")
    best = min(stats, key=lambda s: stats[s].rsr_token)
    with metric_row():
        st.metric("lowest RSR_token", f"X_{best}: {stats[best].rsr_token:.2f}", width="content",
                  help="The source whose tokens have the lowest mean rank/surprisal under this student.")
    return {"cfg": cfg, "stats": stats}


def token_section(sim: dict, r_max: int, thresholds: ZoneThresholds) -> None:
    st.header("One token in the rank–surprisal plane")
    st.markdown(
        "Move one token's probability and watch where it lands. Its surprisal is −ln p; its rank comes from the "
        "simulated student above (the other 50 tokens share the remaining 1 − p like Z). Every dotted line is a "
        "constant ratio rank/surprisal. The token pulls the trajectory's RSR towards its own ratio with weight "
        "s / Σs, so tokens with almost no surprisal barely count.")
    cfg, stats = sim["cfg"], sim["stats"]
    with control_row():
        p = st.select_slider("token probability p", TOKEN_PROBABILITIES, key=state.keep("zpd_token_p", 0.02),
                             format_func=lambda v: f"{v:g}", width=2 * CONTROL_PX)
        n_rest = st.slider("other tokens in the trajectory", 5, 200, step=5, key=state.keep("zpd_rest", 20),
                           width=CONTROL_PX)
        manual = st.checkbox("set the rank by hand", key="zpd_manual_rank")
        state.remember("zpd_token_p", "zpd_rest")
        placed = place_token(p, student_distribution(cfg), r_max)
        rank = placed.rank
        if manual:
            rank = st.slider("rank", 1, max(r_max, 2), min(placed.rank, r_max), key="zpd_token_rank",
                             width=CONTROL_PX)
    clipped = int(clipped_rank(rank, r_max))
    rest_rank, rest_s = sample_trajectory(cfg, n_rest, "D", r_max)
    contrib = rsr_contribution(clipped, placed.surprisal, float(rest_rank.sum()), float(rest_s.sum()))
    with metric_row():
        st.metric("surprisal", f"{placed.surprisal:.2f} nats", width="content")
        st.metric("rank", f"{rank}", help=f"clipped at r_max = {r_max}", width="content")
        st.metric("token r/s", f"{clipped / placed.surprisal:.2f}" if placed.surprisal > 0 else "∞",
                  width="content")
        st.metric("trajectory RSR", f"{contrib.rsr_with:.3f}", delta=f"{contrib.delta:+.3f}",
                  delta_color="inverse", width="content",
                  help=f"{n_rest} sampled tokens from X_D, RSR {contrib.rsr_without:.3f} without this token")
        st.metric("token weight s/Σs", f"{contrib.weight:.1%}", width="content")
    st.caption(f"Zone of this token: **{zone_label(rank, placed.surprisal, thresholds)}** "
               f"(thresholds: surprisal {thresholds.surprisal:g} nats, rank {thresholds.rank}).")
    n_all = n_rest + 1
    before = PlanePoint("trajectory without the token", float(rest_s.mean()), float(rest_rank.mean()),
                        colour="#bbbbbb", size=10, text="trajectory")
    after = PlanePoint("trajectory with the token", (float(rest_s.sum()) + placed.surprisal) / n_all,
                       (float(rest_rank.sum()) + clipped) / n_all, colour="#555555", size=10, text="")
    token = PlanePoint("the token", placed.surprisal, clipped, colour="#ffd60a", symbol="star", size=20)
    fig = rank_surprisal_plane([token, before, after] + simulation_points(stats), thresholds, r_max,
                               x_max=max(10.0, placed.surprisal * 1.1), arrows=[(before, after)])
    chart(fig, key="zpd_chart_token")


def cartoon_section(r_max: int, thresholds: ZoneThresholds) -> None:
    st.header("The paper's cartoon, scored by a real student")
    st.markdown(
        "The paper's cartoon: to find the minimum of f(x) = x² − 4x + 3, a table of values is *too familiar*, "
        "completing the square is *just right* and calculus is *too informative* for a weak student. Here the "
        "three solutions from the demo data are scored by the app's student model. Hover a token for its values "
        "and the student's own top-5 guesses.")
    try:
        from rsr_core.ui.demo import load_demo_scores

        table, scores = load_demo_scores()
    except (ImportError, OSError, LookupError) as exc:
        st.info(f"The demo scores are not available here ({type(exc).__name__}: {md_message(exc)}). They are "
                "regenerated with `make demo-scores`.")
        return
    ids = [t for t in CARTOON if t in scores]
    if not ids:
        st.info("The demo scores hold none of the three cartoon solutions (p01-table-of-values, "
                "p01-complete-the-square, p01-calculus).")
        return
    student = str(table["student"].iloc[0]) if "student" in table and len(table) else "the student"
    rows = []
    for tid in ids:
        ts = scores[tid]
        m = trajectory_metrics(ts.surprisal, ts.rank, ts.entropy, r_max)
        shares = zone_summary(ts.rank, ts.surprisal, r_max, thresholds)
        rows.append({"solution": CARTOON[tid][0], "cartoon": CARTOON[tid][1], "RSR": m["rsr"],
                     "mean surprisal": m["avg_surprisal"], "mean clipped rank": m["avg_rank_clipped"],
                     "tokens": m["n_tokens"],
                     **{f"% {ZONE_LABELS[z]}": 100 * shares[z]["token_share"] for z in shares}})
    df = pd.DataFrame(rows)
    # one column per solution, one row per quantity: four columns fit a narrow window (ten did not)
    with st.container(key="zpd_cartoon"):  # the browser test finds the table by this key
        st.dataframe(cartoon_display(df), hide_index=True, width="stretch", key="zpd_cartoon_table",
                     column_config={"quantity": st.column_config.TextColumn(""),
                                    **{r["solution"]: st.column_config.TextColumn(
                                        r["solution"], alignment="right", help=f"the cartoon's {r['cartoon']}")
                                       for r in rows}})
    ordered = df.sort_values("RSR")
    order = " < ".join(f"{r.solution} {r.RSR:.2f}" for r in ordered.itertuples())
    agrees = ordered["cartoon"].iloc[0] == "just right"
    st.markdown(
        f"Under **{student}** (r_max = {r_max}), RSR orders them: {order}. " + (
            "The lowest goes to the cartoon's *just right* solution." if agrees else
            "This student does not follow the cartoon: RSR is relative to the student, the cartoon is a "
            "picture of the idea, and the paper's students are 3B-14B models. The zone shares and the "
            "heatmaps below show which tokens make the difference."))
    colours = {"too familiar": "#3182bd", "just right": "#31a354", "too informative": "#de2d26"}
    symbols = {"too familiar": "circle", "just right": "square", "too informative": "diamond"}
    # the three means lie close together: named in the legend (distinct colours and shapes), not beside the points
    points = [PlanePoint(f"{r['solution']} ({r['cartoon']})", r["mean surprisal"], r["mean clipped rank"],
                         colour=colours[r["cartoon"]], symbol=symbols[r["cartoon"]], size=13, text="")
              for r in rows]
    chart(rank_surprisal_plane(points, thresholds, r_max, title="The three solutions' means"),
          key="zpd_chart_cartoon")
    st.caption("Each marker is one solution's mean surprisal and mean clipped rank (legend below the chart; "
               "hover a marker for its numbers). A marker on the dotted line of c has RSR c.")
    view = st.radio("colour tokens by", list(VIEWS), format_func=VIEWS.get, horizontal=True,
                    key=state.keep("zpd_view", list(VIEWS)[2]))
    state.remember("zpd_view")
    for tab, tid in zip(st.tabs([f"{CARTOON[t][0]} ({CARTOON[t][1]})" for t in ids]), ids):
        with tab:
            render_token_strip(scores[tid], colour_by=view, r_max=r_max, thresholds=thresholds)
    if REWRITE in scores:
        rewrite_section(scores[REWRITE], student, r_max, thresholds, view)


def rewrite_section(ts, student_name: str, r_max: int, thresholds: ZoneThresholds, view: str) -> None:
    """A guided rewrite: remove the span that raises the calculus solution's RSR most and score it again."""
    from rsr_core.data import demo
    from rsr_core.ui import edit_mode
    from rsr_core.ui.demo import demo_trajectories

    st.subheader("Try a rewrite")
    original = next((t for t in demo_trajectories()[0] if t.trajectory_id == REWRITE), None)
    if original is None:
        return
    edit = suggested_removal(original, ts, r_max)
    if edit is None:
        return
    old, (a, b) = edit
    st.markdown(
        "Could the *too informative* solution be brought into the zone by writing it differently? The inspector "
        "names the span that raises its RSR most; the suggested edit removes its sentences:")
    st.markdown("> " + md_message(old[a:b].strip()).replace("\n", "\n> "))
    st.caption("In the app's Inspector, *Edit* does the same on any trajectory, and keeps the result as a new "
               "candidate of its problem.")
    if st.button("Apply the edit and rescore", key="zpd_rewrite"):
        student = edit_mode.student_for(student_name)
        if student is None:
            return
        plain, max_len = edit_mode.store_format(str(demo.DEMO_STORE), student_name)
        edited = replace_response(original, old[:a] + old[b:])
        with st.spinner("Scoring the edited solution…"):
            state.put(K_REWRITE, edit_mode.rescore_now(student, edited, REWRITE, plain, max_len))
    result = state.get(K_REWRITE)
    if result is None:
        return
    after = result.scores
    before_m, after_m = trajectory_metrics(ts.surprisal, ts.rank, ts.entropy, r_max), \
        trajectory_metrics(after.surprisal, after.rank, after.entropy, r_max)
    shares = [zone_summary(x.rank, x.surprisal, r_max, thresholds) for x in (ts, after)]
    st.dataframe(pd.DataFrame([{"": label, "RSR": m["rsr"], "mean clipped rank": m["avg_rank_clipped"],
                                "mean surprisal": m["avg_surprisal"], "tokens": m["n_tokens"],
                                **{f"% {ZONE_LABELS[z]}": 100 * sh[z]["token_share"] for z in sh}}
                               for label, m, sh in zip(("as written", "edited"), (before_m, after_m), shares)]),
                 hide_index=True, key="zpd_rewrite_table")
    fell = after_m["rsr"] < before_m["rsr"]
    st.markdown(
        f"RSR {'fell' if fell else 'rose'} from {before_m['rsr']:.3f} to {after_m['rsr']:.3f}. " + (
            "Without the span the rest sits closer to the student's zone." if fell else
            "The removed sentences were not the problem for this student on their own: the rest of the solution "
            "is as far from what it would write, and what is left has less surprisal to share the ranks with. "
            "RSR is a ratio: removing tokens helps only when they are ranked worse than their surprisal warrants "
            "in the text that remains."))
    edit_mode.result_view(REWRITE, ts, result, r_max, thresholds, view)


def suggested_removal(t, ts, r_max: int) -> tuple[str, tuple[int, int]] | None:
    """(the response, the characters to remove): the whole sentences of the span that raises RSR most."""
    from rsr_core.analysis import explain
    from rsr_core.analysis.rewrites import part_bounds, removal, token_chars
    from rsr_core.data.trajectory import assistant_text, part_starts
    from rsr_core.ui.inspector import default_window

    message = next(m for m in reversed(t.messages) if m["role"] == "assistant")
    spans = explain.top_spans(ts.surprisal, ts.rank, r_max, default_window(len(ts)), k=1)
    if not spans:
        return None
    text = assistant_text(message)
    a, b = removal(text, *token_chars(ts.offsets, spans[0].start, spans[0].stop),
                   part_bounds(text, part_starts(message)[0]), sentences=True)
    return (text, (a, b)) if b > a else None


def replace_response(t, text: str):
    from rsr_core.data.edits import Edit, edited_trajectory

    return edited_trajectory(t, Edit(t.trajectory_id, response=text), taken=())


r_max = state.current_r_max()
intro()
thresholds = zone_thresholds()
sim = simulation_section(r_max, thresholds)
token_section(sim, r_max, thresholds)
cartoon_section(r_max, thresholds)

"""Teaching page: the zone of proximal development, the idea behind the Rank-Surprisal Ratio.

Runs standalone (`streamlit run pages/zone.py`) or inside the app's `st.navigation`. Reads shared settings through
`rsr_core.ui.state` with defaults; computation lives in `rsr_core.analysis.simulation` and `rsr_core.analysis.zones`.
"""
from __future__ import annotations

import pandas as pd
import streamlit as st

from rsr_core.analysis.metrics import clipped_rank, trajectory_metrics
from rsr_core.ui import state
from rsr_core.ui.navigation import ensure_app_runs
from rsr_core.ui.token_strip import VIEWS, render_token_strip
from rsr_core.ui.zone_figures import (PlanePoint, illustrative_next_token_figure, rank_surprisal_plane,
                                      simulation_points, simulation_table, student_distribution_figure, zone_label)
from rsr_core.analysis.zones import ZoneThresholds, zone_summary, ZONE_LABELS
from rsr_core.analysis.simulation import (SimulationConfig, place_token, rsr_contribution, sample_trajectory, simulate,
                                     student_distribution)

ensure_app_runs()

CARTOON = {  # demo trajectory id -> (solution, the cartoon's reading)
    "p01-table-of-values": ("table of values", "too familiar"),
    "p01-complete-the-square": ("completing the square", "just right"),
    "p01-calculus": ("calculus", "too informative"),
}

TOKEN_PROBABILITIES = (0.0001, 0.0002, 0.0005, 0.001, 0.002, 0.003, 0.005, 0.007, 0.01, 0.015, 0.02, 0.03, 0.05,
                       0.07, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95, 0.99)


SHARED_THRESHOLD_KEYS = (state.ZONE_S0, state.ZONE_K)  # set by the app's sidebar when it owns them


def zone_thresholds() -> ZoneThresholds:
    """The app's zone thresholds when it sets them; otherwise editable here (page-local widgets, defaults 1.0 / 10)."""
    if all(state.get(k) is not None for k in SHARED_THRESHOLD_KEYS):
        return state.current_thresholds()
    with st.expander("Zone thresholds (used by every zone view on this page)"):
        c1, c2 = st.columns(2)
        s0 = c1.number_input("surprisal threshold (nats)", 0.05, 10.0,
                             float(state.get(state.ZONE_S0, 1.0)), 0.05, key="zpd_s0",
                             help="Tokens below it are familiar; at or above it, informative.")
        k = c2.number_input("rank threshold", 1, 1000, int(state.get(state.ZONE_K, 10)), 1,
                            key="zpd_k",
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
    st.plotly_chart(illustrative_next_token_figure(), width="stretch")
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
    c = st.columns(5)
    weight = c[0].slider("mixture weight w", 0.50, 0.99, step=0.01, key=state.keep("zpd_weight", 0.80),
                         help="Weight of the major mode Z_A.")
    alpha = c[1].slider("Zipf exponent α", 1.2, 3.5, step=0.1, key=state.keep("zpd_alpha", 2.3),
                        help="Larger: both modes more peaked.")
    shift = c[2].slider("shift (token ids)", 1, 49, step=1, key=state.keep("zpd_shift", 15),
                        help="How far Z_B is moved from Z_A (cyclically).")
    n_samples = c[3].select_slider("samples per source", [1_000, 2_000, 5_000, 10_000, 20_000, 50_000],
                                   key=state.keep("zpd_samples", 10_000))
    seed = c[4].number_input("seed", 0, 1_000_000, step=1, key=state.keep("zpd_seed", 0))
    state.remember("zpd_weight", "zpd_alpha", "zpd_shift", "zpd_samples", "zpd_seed")
    cfg = SimulationConfig(alpha=float(alpha), weight=float(weight), shift=int(shift), n_samples=int(n_samples),
                           seed=int(seed))
    stats = simulate(cfg)
    left, right = st.columns([1, 1])
    left.plotly_chart(student_distribution_figure(cfg), width="stretch")
    with right:
        table = simulation_table(stats)
        st.dataframe(table, hide_index=True, width="stretch",
                     column_config={k: st.column_config.NumberColumn(format="%.2f") for k in table.columns
                                    if k != "source"})
        st.caption(
            "The paper's table (w = 0.8, α = 2.3, 10,000 samples) is reproduced by a cyclic shift of 15 token ids; "
            "X_C is a Zipf(α) over a fixed random permutation of the vocabulary. The paper's RSR_token is the "
            "mean of per-token rank/surprisal; the last column is the ratio of sums that RSR (Eq. 7) uses. Both "
            "put X_B lowest. Ranks here never exceed 50, so clipping does not apply.")
        best = min(stats, key=lambda s: stats[s].rsr_token)
        st.metric("lowest RSR_token", f"X_{best}: {stats[best].rsr_token:.2f}",
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
    c1, c2, c3 = st.columns([2, 1, 1])
    p = c1.select_slider("token probability p", TOKEN_PROBABILITIES, key=state.keep("zpd_token_p", 0.02),
                         format_func=lambda v: f"{v:g}")
    manual = c2.checkbox("set the rank by hand", key="zpd_manual_rank")
    n_rest = c3.slider("other tokens in the trajectory", 5, 200, step=5, key=state.keep("zpd_rest", 20))
    state.remember("zpd_token_p", "zpd_rest")
    placed = place_token(p, student_distribution(cfg), r_max)
    rank = placed.rank
    if manual:
        rank = c2.slider("rank", 1, max(r_max, 2), min(placed.rank, r_max), key="zpd_token_rank")
    clipped = int(clipped_rank(rank, r_max))
    rest_rank, rest_s = sample_trajectory(cfg, n_rest, "D", r_max)
    contrib = rsr_contribution(clipped, placed.surprisal, float(rest_rank.sum()), float(rest_s.sum()))
    m = st.columns(5)
    m[0].metric("surprisal", f"{placed.surprisal:.2f} nats")
    m[1].metric("rank", f"{rank}", help=f"clipped at r_max = {r_max}")
    m[2].metric("token r/s", f"{clipped / placed.surprisal:.2f}" if placed.surprisal > 0 else "∞")
    m[3].metric("trajectory RSR", f"{contrib.rsr_with:.3f}", delta=f"{contrib.delta:+.3f}", delta_color="inverse",
                help=f"{n_rest} sampled tokens from X_D, RSR {contrib.rsr_without:.3f} without this token")
    m[4].metric("token weight s/Σs", f"{contrib.weight:.1%}")
    st.caption(f"Zone of this token: **{zone_label(rank, placed.surprisal, thresholds)}** "
               f"(thresholds: surprisal {thresholds.surprisal:g} nats, rank {thresholds.rank}).")
    n_all = n_rest + 1
    before = PlanePoint("trajectory without the token", float(rest_s.mean()), float(rest_rank.mean()),
                        colour="#bbbbbb", size=10, text="trajectory")
    after = PlanePoint("trajectory with the token", (float(rest_s.sum()) + placed.surprisal) / n_all,
                       (float(rest_rank.sum()) + clipped) / n_all, colour="#555555", size=10, text="")
    token = PlanePoint("the token", placed.surprisal, clipped, colour="#ffd60a", symbol="star", size=20)
    fig = rank_surprisal_plane(simulation_points(stats) + [before, after, token], thresholds, r_max,
                               x_max=max(10.0, placed.surprisal * 1.1), arrows=[(before, after)])
    st.plotly_chart(fig, width="stretch")


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
        st.info(f"The demo scores are not available here ({type(exc).__name__}: {exc}). They are regenerated "
                "with `make demo-scores`.")
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
    left, right = st.columns([1, 1])
    with left:
        st.dataframe(df, hide_index=True, width="stretch",
                     column_config={k: st.column_config.NumberColumn(format="%.2f") for k in df.columns
                                    if k not in ("solution", "cartoon", "tokens")})
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
    points = [PlanePoint(r["solution"], r["mean surprisal"], r["mean clipped rank"], colour=colours[r["cartoon"]],
                         size=14) for r in rows]
    right.plotly_chart(rank_surprisal_plane(points, thresholds, r_max, title="trajectory means"), width="stretch")
    view = st.radio("colour tokens by", list(VIEWS), format_func=VIEWS.get, horizontal=True,
                    key=state.keep("zpd_view", list(VIEWS)[2]))
    state.remember("zpd_view")
    for tab, tid in zip(st.tabs([f"{CARTOON[t][0]} ({CARTOON[t][1]})" for t in ids]), ids):
        with tab:
            render_token_strip(scores[tid], colour_by=view, r_max=r_max, thresholds=thresholds)


r_max = state.current_r_max()
intro()
thresholds = zone_thresholds()
sim = simulation_section(r_max, thresholds)
token_section(sim, r_max, thresholds)
cartoon_section(r_max, thresholds)

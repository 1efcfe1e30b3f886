"""A results store whose data is Markdown that would fetch or link a URL if the app rendered it: real demo scores
under teacher names, trajectory ids, problem ids, run names, prompts and a folder name that hold images, links,
raw URLs, HTML, math and a backtick that ends a code span. Every URL's path holds "beacon"."""
from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

from app_pages import write_store

PROBLEMS = ("p01", "p03", "p07")  # p03-terse is marked wrong: the Selection page's warnings about it
FOLDER = "store ![beacon](beacon-store.png)"


def image(host: str, what: str) -> str:
    return f"![{what}]({host}/beacon-{what}.png)"


def link(host: str, what: str) -> str:
    return f"[{what}]({host}/beacon-{what})"


def teacher_name(host: str, teacher: str) -> str:
    return f"{teacher} {image(host, 'teacher')} `![tick]({host}/beacon-tick.png)` {link(host, 'teacher-link')}"


def trajectory_id(host: str, tid: str) -> str:
    return f"{tid} {image(host, 'id')} {link(host, 'id-link')}"


def problem_id(host: str, pid: str) -> str:
    return f"{pid} {link(host, 'problem-link')} {image(host, 'problem')}"


def prompt(host: str, text: str) -> str:
    return (f"{image(host, 'prompt')} $x^2$ <img src=\"{host}/beacon-html.png\"> {host}/beacon-raw :red[red] "
            f"www.example.com\n\n- {link(host, 'prompt-link')}\n\n{text}")


def hostile_store(folder: Path, host: str, demo) -> tuple[Path, dict[str, str]]:
    """(the store, {demo trajectory id: its hostile id}): the demo's trajectories of PROBLEMS with their real
    scores, every name and prompt made hostile."""
    from rsr_core.data.trajectory import Trajectory

    table, scores = demo
    rows = table[table["problem_id"].isin(PROBLEMS)].to_dict("records")
    ids, trajectories = {}, []
    for r in rows:
        messages = json.loads(r["messages"])
        for m in messages:
            if m["role"] == "user":
                m["content"] = prompt(host, m["content"])
                break
        ids[r["trajectory_id"]] = trajectory_id(host, r["trajectory_id"])
        correct = None if pd.isna(r["correct"]) else bool(r["correct"])
        trajectories.append(Trajectory(ids[r["trajectory_id"]], problem_id(host, r["problem_id"]),
                                       teacher_name(host, r["teacher"]), messages,
                                       run=f"run {image(host, 'run')}", correct=correct))
    folder.mkdir(parents=True, exist_ok=True)
    path = write_store(folder / FOLDER, trajectories, {ids[t]: scores[t] for t in ids})
    return path, ids

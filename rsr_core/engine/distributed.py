"""Scoring on many GPUs and machines through Ray Data, the distributed engine batch inference at this scale runs on.

Trajectories stream through an actor pool (`map_batches` with `ScoringActor`): one actor per GPU (or per group of
CPU cores), the student loaded once per actor, each batch scored by the same `score_trajectories` as the
single-process path (length-bucketed passes inside the actor), so the numbers are the same. Actors return plain
numeric Arrow columns, no Python objects, which keeps Ray's memory accounting right; the driver rebuilds the
per-token results (texts from the conversation and the offsets, alternatives from the tokenizer) and commits
each batch to the results store as it arrives. Ray Data restarts an actor that dies and retries its batch, and the
store skips what it already holds, so nothing is lost or written twice; a stopped run resumes from the store.
Ray is imported only here, and only when `score --ray` asks for it.
"""
from __future__ import annotations

import json
import os
import sys
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterator

import numpy as np
import pyarrow as pa

from rsr_core.data.formats import RecordError
from rsr_core.data.token_scores import TokenScores
from rsr_core.data.trajectory import Trajectory, assistant_texts
from rsr_core.engine.pipeline import MAX_LEN, ScoringProgress, Sink
from rsr_core.engine.scoring import TOP_K

BATCH_TRAJECTORIES = 32  # trajectories per actor call; each call plans its own length-bucketed passes
# what Ray's C++ core logs at error level on every successful run of a Ray Data actor pool (its workers take their
# configuration from the object store, and an actor restarted after losing it could not start: ray issue 53727)
FALSE_ALARMS = (b"has constructor arguments in the object store",)
LIST_COLUMNS = ("token_ids", "starts", "ends", "turn", "surprisal", "rank", "entropy", "top_ids", "top_probs", "brier",
                "lark_brier")


@dataclass
class RayResult:
    """What a distributed run leaves beside the results it committed."""

    errors: list[RecordError] = field(default_factory=list)
    rewritten: int = 0  # conversations whose template would rewrite the assistant text
    canonical_tools: int = 0  # conversations whose tool calls were scored in the canonical form


@dataclass
class RayRun:
    """How to reach the cluster and what each actor loads."""

    student: str | None
    address: str | None = None  # None: start a local cluster
    workers: int | None = None  # actors; default one per GPU, else one
    device: str = "auto"
    dtype: str = "auto"
    max_len: int = MAX_LEN
    token_budget: int | None = None
    plain_format: bool = False
    trust_remote_code: bool = False


def results_to_arrow(ids: list[str], scores: dict[str, TokenScores], problems: dict[str, str],
                     rewritten: set[str], canonical_tools: set[str] = frozenset(),
                     index: list[int] | None = None) -> pa.Table:
    """One row per trajectory: its per-token arrays as numeric Arrow lists (top-k flattened), or its problem."""
    def column(name: str, dtype) -> pa.Array:
        values = []
        for tid in ids:
            s = scores.get(tid)
            if s is None or (name in ("brier", "lark_brier") and getattr(s, name) is None):
                values.append(np.zeros(0, dtype))
            elif name in ("starts", "ends"):
                values.append(s.offsets[:, 0 if name == "starts" else 1].astype(dtype))
            else:
                values.append(np.asarray(getattr(s, name)).reshape(-1).astype(dtype))
        return pa.array(values, type=pa.list_(pa.from_numpy_dtype(np.dtype(dtype))))

    return pa.table({
        "index": pa.array(index if index is not None else range(len(ids)), pa.int64()),
        "trajectory_id": pa.array(ids, pa.string()),
        "problem": pa.array([problems.get(t) for t in ids], pa.string()),
        "rewritten": pa.array([t in rewritten for t in ids], pa.bool_()),
        "canonical_tools": pa.array([t in canonical_tools for t in ids], pa.bool_()),
        "truncated": pa.array([bool(scores[t].truncated) if t in scores else False for t in ids], pa.bool_()),
        "n_context": pa.array([int(scores[t].n_context) if t in scores else 0 for t in ids], pa.int64()),
        "token_ids": column("token_ids", np.int64), "starts": column("starts", np.int64),
        "ends": column("ends", np.int64), "turn": column("turn", np.int32),
        "surprisal": column("surprisal", np.float32), "rank": column("rank", np.int64),
        "entropy": column("entropy", np.float32), "top_ids": column("top_ids", np.int64),
        "top_probs": column("top_probs", np.float32), "brier": column("brier", np.float32),
        "lark_brier": column("lark_brier", np.float32),
    })


def scores_from_row(row: dict, messages: list[dict], decode: Callable[[int], str], top_k: int) -> TokenScores:
    """A trajectory's TokenScores back from its Arrow row: token texts from the conversation and the offsets,
    the alternatives' texts from the tokenizer (as `scoring.to_token_scores` decodes them)."""
    texts = assistant_texts(messages)
    arr = {name: np.asarray(row[name]) for name in LIST_COLUMNS}
    offsets = np.stack([arr["starts"], arr["ends"]], axis=1).astype(np.int64).reshape(-1, 2)
    top_ids = arr["top_ids"].astype(np.int64).reshape(-1, top_k)
    return TokenScores(
        token_ids=arr["token_ids"].astype(np.int64),
        tokens=[texts[k][a:b] for k, (a, b) in zip(arr["turn"].tolist(), offsets.tolist())],
        offsets=offsets, turn=arr["turn"].astype(np.int32), surprisal=arr["surprisal"].astype(np.float32),
        rank=arr["rank"].astype(np.int64), entropy=arr["entropy"].astype(np.float32), top_ids=top_ids,
        top_tokens=[[decode(i) for i in r] for r in top_ids.tolist()],
        top_probs=arr["top_probs"].astype(np.float32).reshape(-1, top_k), truncated=bool(row["truncated"]),
        n_context=int(row["n_context"]),
        **{name: arr[name].astype(np.float32) for name in ("brier", "lark_brier")
           if arr[name].size == arr["surprisal"].size})


class ScoringActor:
    """A Ray Data actor: loads the student once, then scores each batch of conversations it is given."""

    def __init__(self, run: RayRun, threads: int):
        import torch

        from rsr_core.engine.student import load_student

        torch.set_num_threads(max(1, threads))
        self.run = run
        self.student = load_student(run.student, device=run.device, dtype=run.dtype,
                                    trust_remote_code=run.trust_remote_code)

    def __call__(self, batch: pa.Table) -> pa.Table:
        from rsr_core.engine.pipeline import score_trajectories

        ids = batch.column("trajectory_id").to_pylist()
        tools = batch.column("tools").to_pylist()
        trajectories = [Trajectory(tid, "", "", json.loads(m), record=k, tools=json.loads(t) if t else None)
                        for k, (tid, m, t) in enumerate(zip(ids, batch.column("messages").to_pylist(), tools))]
        result = score_trajectories(trajectories, self.student, max_len=self.run.max_len,
                                    token_budget=self.run.token_budget, use_cache=False,
                                    plain_format=self.run.plain_format)
        failed = {e.record: e.message for e in result.errors}
        problems = {t.trajectory_id: failed.get(k, "not scored") for k, t in enumerate(trajectories)
                    if t.trajectory_id not in result.scores}
        return results_to_arrow(ids, result.scores, problems, result.rewritten_ids, result.canonical_tools_ids,
                                batch.column("index").to_pylist())


def _cluster(address: str | None):
    """Start (or join) the Ray cluster, quietly; our own progress bar reports the run."""
    import logging
    import sys

    if address is None and "ray" not in sys.modules:  # a local cluster: Ray's own default, token authentication,
        os.environ.setdefault("RAY_AUTH_MODE", "token")  # said before Ray reads its configuration, so not noted

    import ray

    import rsr_core

    package = str(Path(rsr_core.__file__).resolve().parent)
    for name in ("ray", "ray.data"):
        logging.getLogger(name).setLevel(logging.WARNING)
    logging.getLogger("ray.data._internal.progress").setLevel(logging.ERROR)  # "progress bars disabled": ours
    if not ray.is_initialized():
        ray.init(address=address, include_dashboard=False, log_to_driver=False, configure_logging=False,
                 runtime_env={"py_modules": [package], "env_vars": {"TOKENIZERS_PARALLELISM": "false"}})
    ctx = ray.data.DataContext.get_current()
    ctx.enable_progress_bars = False
    ctx.print_on_execution_start = False
    return ray


def cluster_device(address: str | None, device: str, dtype: str) -> tuple[str, str]:
    """(device, dtype) the actors use: `auto` means cuda and bf16 when the cluster has GPUs, else cpu and fp32."""
    ray = _cluster(address)
    gpus = ray.cluster_resources().get("GPU", 0) > 0
    if device == "auto":
        device = "cuda" if gpus else "cpu"
    if dtype == "auto":
        dtype = "bfloat16" if device == "cuda" else "float32"
    return device, dtype


def score_with_ray(trajectories: list[Trajectory], run: RayRun, tokenizer, sink: Sink,
                   progress: Callable[[ScoringProgress], None] | None = None) -> RayResult:
    """Score `trajectories` on the cluster and hand each arriving batch to `sink` as [(trajectory, scores)].
    Returns the trajectories that could not be scored, with their problem, and the rewrite count."""
    import time

    ray = _cluster(run.address)
    resources = ray.cluster_resources()
    gpus = int(resources.get("GPU", 0))
    workers = max(1, run.workers or gpus or 1)
    cpus = max(1, int(resources.get("CPU", 1)) // workers) if not gpus else 1
    rows = [{"index": k, "trajectory_id": t.trajectory_id, "messages": json.dumps(t.messages, ensure_ascii=False),
             "tools": json.dumps(t.tools, ensure_ascii=False) if t.tools else None}
            for k, t in sorted(enumerate(trajectories), key=lambda kt: -sum(map(len, assistant_texts(kt[1].messages))))]
    ds = ray.data.from_items(rows, override_num_blocks=max(workers, len(rows) // BATCH_TRAJECTORIES))
    scored = ds.map_batches(ScoringActor, fn_constructor_args=(run, cpus), batch_size=BATCH_TRAJECTORIES,
                            batch_format="pyarrow", compute=ray.data.ActorPoolStrategy(size=workers),
                            num_gpus=1 if gpus else 0, num_cpus=0 if gpus else cpus)
    decode = _decoder(tokenizer)
    state = ScoringProgress(total=len(trajectories))
    out = RayResult()
    started = time.perf_counter()
    with without_false_alarms():
        for table in scored.iter_batches(batch_format="pyarrow", batch_size=None):
            pairs = []
            for row in table.to_pylist():
                t = trajectories[row["index"]]  # results travel with their trajectory's position, never by id alone
                out.rewritten += bool(row["rewritten"])
                out.canonical_tools += bool(row["canonical_tools"])
                if row["problem"]:
                    out.errors.append(RecordError(t.source, t.record, row["problem"]))
                else:
                    pairs.append((t, scores_from_row(row, t.messages, decode, _top_k(row))))
                    state.tokens += len(row["rank"])
            sink(pairs)
            state.done += table.num_rows
            state.seconds = time.perf_counter() - started
            if progress:
                progress(state)
    return out


@contextmanager
def without_false_alarms(alarms: tuple[bytes, ...] = FALSE_ALARMS):
    """This process's stderr (file descriptor 2, where Ray's C++ core writes) without the lines that hold one of
    `alarms`; everything else passes at once, partial lines (a progress bar) included."""
    import threading

    sys.stderr.flush()
    read, write = os.pipe()
    saved = os.dup(2)
    os.dup2(write, 2)
    os.close(write)

    def relay() -> None:
        pending = b""
        while True:
            chunk = os.read(read, 1 << 16)
            if not chunk:
                break
            lines = (pending + chunk).split(b"\n")
            pending = lines.pop()
            shown = [line for line in lines if not any(a in line for a in alarms)]
            if shown:
                os.write(saved, b"\n".join(shown) + b"\n")
            if pending and not pending.startswith(b"["):  # not a C++ log line: a progress bar, shown now
                os.write(saved, pending)
                pending = b""
        if pending and not any(a in pending for a in alarms):
            os.write(saved, pending)

    thread = threading.Thread(target=relay, name="rsr-stderr", daemon=True)
    thread.start()
    try:
        yield
    finally:
        sys.stderr.flush()
        os.dup2(saved, 2)  # closes the pipe's write end: the relay drains it and ends
        thread.join(timeout=5)
        os.close(saved)
        os.close(read)


def _top_k(row: dict) -> int:
    n = len(row["rank"])
    return len(row["top_ids"]) // n if n else TOP_K


def _decoder(tokenizer) -> Callable[[int], str]:
    cache: dict[int, str] = {}

    def decode(i: int) -> str:
        if i not in cache:
            cache[i] = tokenizer.decode([i])
        return cache[i]
    return decode


def shutdown() -> None:
    import ray

    if ray.is_initialized():
        ray.shutdown()


def worker_processes() -> Iterator[int]:
    """PIDs of this machine's scoring actors (for tests that kill one)."""
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            cmd = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if "ray::" in cmd and "ScoringActor" in cmd:
            yield int(pid)

"""`python -m rsr_core COMMAND ...`: batch scoring, reports, selection and the paper reproduction.

Each command lives in `rsr_core/commands/<name>.py` with `add_arguments(parser)`, `run(args) -> int` and
optionally `check(args)`, which runs right after parsing and raises `checks.UsageError` for arguments or paths that
cannot work (printed with the usage line, exit code 2), before any input is read or model loaded. Ctrl-C anywhere
ends with "interrupted" and exit code 130, never a traceback.
"""
from __future__ import annotations

import argparse
import importlib
import sys

COMMANDS = {
    "score": ("score", "score trajectories under a student into a results store or a trajectory table"),
    "report": ("report", "print the per-teacher dataset-level table of a trajectory table or a results store"),
    "select": ("select", "keep one trajectory (or the B best) per problem and export it with provenance"),
    "rescore": ("rescore", "score edited versions of stored trajectories and add them to the store as candidates"),
    "teachers": ("teachers", "compare teachers: dataset RSR with bootstrap intervals, budgeted selection"),
    "reproduce-paper": ("reproduce_paper", "recompute the paper's metric/accuracy correlations from its tables"),
    "import-scores": ("import_scores", "turn a trajectory table and its token table into a results store"),
    "export": ("export", "write a results store's trajectory table and token table as flat files"),
    "compact": ("compact", "merge a results store's small parts into as few files as possible"),
    "app": ("app", "start the app (streamlit run app.py) with its modules imported before the first visitor"),
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m rsr_core", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    for name, (module, help_text) in COMMANDS.items():
        p = sub.add_parser(name, help=help_text, description=help_text)
        mod = importlib.import_module(f"rsr_core.commands.{module}")
        mod.add_arguments(p)
        p.set_defaults(_run=mod.run, _check=getattr(mod, "check", None), _parser=p)
    return parser


def main(argv: list[str] | None = None) -> int:
    from rsr_core.commands.checks import UsageError

    try:
        parser = build_parser()
        args, extra = parser.parse_known_args(argv)
        if extra and not getattr(args, "_passes_on", False):
            parser.error(f"unrecognized arguments: {' '.join(extra)}")
        args.passed_on = extra
        if args._check is not None:
            try:
                args._check(args)
            except UsageError as e:
                args._parser.error(str(e))  # the usage line, the message, exit code 2
        return int(args._run(args) or 0)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())

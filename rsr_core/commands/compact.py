"""`compact STORE [--student NAME]`: merge a results store's small parts into as few files as possible."""
from __future__ import annotations

import argparse
import sys


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("store", help="results store folder")
    p.add_argument("--student", help="only this student's results (default: every student)")


def run(args: argparse.Namespace) -> int:
    from rsr_core.data.store import StoreError, compact

    try:
        compact(args.store, args.student)
    except (StoreError, KeyError, OSError) as e:
        print(f"error: {args.store}: {e}", file=sys.stderr)
        return 2
    return 0

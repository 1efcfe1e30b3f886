"""`compact STORE [--student NAME]`: merge a results store's small parts into as few files as possible."""
from __future__ import annotations

import argparse
import sys


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("store", help="results store folder")
    p.add_argument("--student", help="only this student's results (default: every student)")


def run(args: argparse.Namespace) -> int:
    from rsr_core.data.store import StoreError, compact

    from rsr_core.data.score_tables import is_store

    if not is_store(args.store):
        print(f"error: {args.store} is not an RSR Explorer results store (no store.json)", file=sys.stderr)
        return 2
    try:
        compact(args.store, args.student)
    except KeyError as e:
        print(f"error: {e.args[0]}", file=sys.stderr)
        return 2
    except StoreError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except OSError as e:
        print(f"error: {args.store}: {e.strerror or e}", file=sys.stderr)
        return 1
    return 0

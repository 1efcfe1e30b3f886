"""`python -m rsr_core app` (`rsr_core.ui.launch`): the app with its modules imported before the first browser
session."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_preload_imports_the_pages_modules_but_not_the_engine():
    code = ("import sys; from rsr_core.ui import launch; names = launch.preload(); "
            "print(all(n in sys.modules for n in names), 'torch' in sys.modules, 'rsr_core.engine' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["True", "False", "False"]
    assert "No runtime found" not in out.stderr  # the decorators' checks are kept quiet


def test_options_are_passed_on_to_streamlit_and_other_commands_still_reject_unknown_ones():
    from rsr_core.cli import build_parser

    parser = build_parser()
    args, extra = parser.parse_known_args(["app", "--server.port", "8502"])
    assert args.command == "app" and args._passes_on and extra == ["--server.port", "8502"]
    out = subprocess.run([sys.executable, "-m", "rsr_core", "report", "t.parquet", "--bogus"], cwd=ROOT,
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 2 and "unrecognized arguments: --bogus" in out.stderr

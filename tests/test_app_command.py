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


def test_the_start_up_store_is_read_before_the_first_visitor(monkeypatch, tmp_path):
    """`serve` reads the store named by RSR_STORE while the server starts: the first page then finds the tables, the
    teacher report and the default selection in the shared caches, under the keys it asks for."""
    import numpy as np
    from streamlit.testing.v1 import AppTest

    from app_pages import frame_with_column
    from rsr_core.data.demo import DEMO_STORE
    from rsr_core.ui import launch, results
    from rsr_core.ui.analysis_cache import cached_teacher_report, prepared_selection, report_students
    from rsr_core.ui.sidebar import default_student

    monkeypatch.setenv("RSR_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("RSR_STORE", str(DEMO_STORE))
    report = launch.prepare_start_store()
    path = str(Path(DEMO_STORE).resolve())
    students = results.students(path)
    student = default_student(students)
    tables = {s: results.table(path, s, 100) for s in report_students(student, students)}
    assert report is not None and cached_teacher_report(tables) is report  # the page's key finds it
    assert prepared_selection(tables[student], student) is not None
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=180).run()
    assert not at.exception
    assert at.session_state["student_name"] == student
    shown = frame_with_column(at, "teacher_score")
    assert shown["teacher"].tolist() == report["teacher"].tolist()
    np.testing.assert_allclose(shown["rsr"], report["rsr"])
    monkeypatch.setenv("RSR_STORE", "/etc")  # outside the data roots: left to the sidebar to refuse
    assert launch.prepare_start_store() is None
    broken = tmp_path / "broken"
    (broken / "students" / "x").mkdir(parents=True)
    (broken / "store.json").write_text("{not json")
    monkeypatch.setenv("RSR_DATA_ROOTS", str(tmp_path))
    monkeypatch.setenv("RSR_STORE", str(broken))  # not a readable store: no traceback, the sidebar says why
    assert launch.prepare_start_store() is None
    monkeypatch.delenv("RSR_STORE")
    assert launch.prepare_start_store() is None

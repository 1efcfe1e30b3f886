"""The package layers: `data` and `analysis` never load the model stack, and only `ui` imports Streamlit."""
import ast
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_data_and_analysis_import_without_torch():
    code = ("import sys, pkgutil, importlib, rsr_core.data, rsr_core.analysis\n"
            "for pkg in (rsr_core.data, rsr_core.analysis):\n"
            "    for m in pkgutil.iter_modules(pkg.__path__):\n"
            "        importlib.import_module(f'{pkg.__name__}.{m.name}')\n"
            "bad = sorted(m for m in ('torch', 'transformers', 'rsr_core.engine', 'streamlit') if m in sys.modules)\n"
            "print(','.join(bad))")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "", f"data/analysis pulled in: {out.stdout.strip()}"


def _imports(path: Path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
    return names


def test_streamlit_only_in_ui():
    offenders = [str(p.relative_to(ROOT)) for p in (ROOT / "rsr_core").rglob("*.py")
                 if "ui" not in p.relative_to(ROOT / "rsr_core").parts[:1]
                 and any(n == "streamlit" or n.startswith("streamlit.") for n in _imports(p))]
    assert offenders == []


def test_lower_layers_do_not_import_upper_ones():
    """analysis is the ground floor (it imports no other layer); data builds on it; the engine on both."""
    rules = {"data": ("rsr_core.engine", "rsr_core.ui", "rsr_core.commands", "torch"),
             "analysis": ("rsr_core.data", "rsr_core.engine", "rsr_core.ui", "rsr_core.commands", "torch"),
             "engine": ("rsr_core.ui", "rsr_core.commands")}
    offenders = []
    for layer, banned in rules.items():
        for p in (ROOT / "rsr_core" / layer).rglob("*.py"):
            offenders += [f"{p.relative_to(ROOT)}: {n}" for n in _imports(p) if n.startswith(banned)]
    assert offenders == []


def test_session_state_is_touched_only_through_ui_state():
    """Every session-state key goes through `rsr_core.ui.state` (it names them all)."""
    offenders = []
    for p in [*(ROOT / "pages").glob("*.py"), *(ROOT / "rsr_core").rglob("*.py"), ROOT / "app.py"]:
        if p == ROOT / "rsr_core" / "ui" / "state.py":
            continue
        code = [line for line in p.read_text().splitlines() if not line.lstrip().startswith("#")]
        if any("st.session_state" in line and '"' not in line.split("st.session_state")[0][-1:]
               for line in code if "`st.session_state`" not in line):
            offenders.append(str(p.relative_to(ROOT)))
    assert offenders == []

"""Data shown through Streamlit's Markdown stays text (`rsr_core.ui.markdown`): escaped values, rendered by a
CommonMark parser, read as the value itself with no image, link, HTML, code or emphasis; and the app in AppTest, on a
results store whose teacher names, ids, prompts and run names are hostile Markdown, draws no image, link, HTML or
math from them on any page. (tests/test_e2e_beacon.py checks the same in a browser.)"""
from __future__ import annotations

import html
import re
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rsr_core.ui.markdown import WORD_JOINER, md_code, md_message, md_text

markdown_it = pytest.importorskip("markdown_it")
MD = markdown_it.MarkdownIt("commonmark").enable(["table", "strikethrough"])
ROOT = Path(__file__).resolve().parents[1]
HOST = "http://127.0.0.1:9"
RAW_URL = re.compile(r"(?i)https?://|www\.|[-.\w+]@[-\w]+\.")  # what GFM turns into a link in text
HOSTILE = [
    f"![x]({HOST}/beacon.png)", f"[x]({HOST}/link)", f"[x][r]\n\n[r]: {HOST}/ref", f"<{HOST}/auto>",
    f"raw {HOST}/raw www.example.com a@b.co", "$x^2$ and $$y$$", "<img src=x onerror=alert(1)> <b>b</b> &lt; &#33;",
    ":red[red] :blue-background[b]{#id}", "**b** __u__ _i_ *e* ~~s~~", "`code` ``x``` `", "a|b\n-|-\n1|2",
    "# h\n> q\n- li\n  + li\n1. one\n2) two\n===\n---\n***\n___", "back\\slash\\", "line\n\n    ![x](y.png)",
    "```\nfence\n```", "~~~\nfence\n~~~", "x  \ny\\\r\nz\r- w", "",
]
PLAIN = ["p03-terse", "RSR_DATA_ROOTS", "smollm2-135m-instruct", "3.5", "a - b", "C:/data", "line 2: invalid JSON"]


def shown_text(rendered: str) -> str:
    """The text a reader sees in rendered HTML, whitespace collapsed (a line break reads as a space)."""
    return " ".join(html.unescape(re.sub(r"<[^>]+>", " ", rendered)).replace(WORD_JOINER, "").split())


def tags(rendered: str) -> set[str]:
    """The HTML elements of rendered Markdown other than paragraphs and line breaks."""
    return set(re.findall(r"<([a-z0-9]+)", rendered)) - {"p", "br"}


def drawn_markup(text: str) -> list[str]:
    """What Streamlit's Markdown would draw from `text` as more than text: images, links (GFM's raw URLs too),
    HTML, math."""
    found = []
    for token in MD.parse(text):
        for t in [token, *(token.children or [])]:
            if t.type in ("image", "link_open", "html_inline", "html_block"):
                found.append(t.type)
            if t.type == "text" and RAW_URL.search(t.content):
                found.append(f"raw URL in {t.content!r}")
    if "$" in re.sub(r"\\.", "", text, flags=re.S):
        found.append("math")
    return found


@pytest.mark.parametrize("value", HOSTILE + PLAIN)
def test_an_escaped_value_renders_as_its_own_text(value):
    out = md_text(value)
    rendered = MD.render(out)
    assert tags(rendered) == set(), rendered
    assert shown_text(rendered) == " ".join(value.split())
    assert drawn_markup(out) == []
    unescaped = re.sub(r"\\.", "", out, flags=re.S)
    assert not any(sign in unescaped for sign in ("![", "](", "[", "`", "$", "<", "&", "*")), out


def test_plain_values_are_left_as_they_are():
    for value in PLAIN:
        assert md_text(value) == value
    assert md_text("_x_ a_b") == r"\_x\_ a_b"  # `_` emphasises only at a word's edge
    assert md_text("- a\n  + b\n1. c\n2.5") == "\\- a\n\\+ b\n1\\. c\n2.5"  # list markers only at a line's start
    assert md_text("x:red[y] 10:30") == r"x\:red\[y\] 10:30"  # Streamlit's directives, not times
    assert md_text(f"{HOST}/p www.x.org a@b.co") == (
        f"http:{WORD_JOINER}//127.0.0.1:9/p www{WORD_JOINER}.x.org a{WORD_JOINER}@b.co")


PIECES = list("\\`*_{}[]()#+-.!|<>~$&:=/@ \n\r\taZ09é") + ["http://", "www.", "1. ", "    "]


@settings(max_examples=300, deadline=None)
@given(st.lists(st.sampled_from(PIECES), max_size=30).map("".join))
def test_any_text_renders_as_itself(value):
    value = value.lstrip()  # leading blanks of the whole value: the context decides (4 make a code block)
    rendered = MD.render(md_text(value))
    assert tags(rendered) == set(), (value, rendered)
    assert shown_text(rendered) == " ".join(value.split())


@pytest.mark.parametrize("value", HOSTILE + PLAIN + ["`", "``", " ` ", "a`b``c```d"])
def test_a_code_span_holds_the_whole_value(value):
    rendered = MD.render(md_code(value))
    assert tags(rendered) == {"code"} and rendered.count("<code>") == 1, rendered
    code = html.unescape(re.search(r"<code>(.*)</code>", rendered, re.S).group(1))
    assert code == (re.sub(r"\r\n?|\n", " ", value) or " ")


def test_a_message_keeps_its_code_spans_and_escapes_the_rest():
    message = "`/etc/passwd` is outside the folders this server may read: `/data`, `/srv`."
    assert md_message(message) == message
    for value in HOSTILE:
        for message in (f"`{value}` is outside the folders", f"records of {value} share ids ({value!r})",
                        f"{value}: `{value}` holds links to `{value}`"):
            out = md_message(message)
            assert tags(MD.render(out)) <= {"code"}, (message, out)
            assert drawn_markup(re.sub(r"`+[^`]*`+", "", out)) == []  # outside its code spans


# --- the app on hostile data ---------------------------------------------------------------------------------------

MARKDOWN_FIELDS = ("body", "label", "help", "text")  # the fields Streamlit draws as Markdown
PLAIN_ELEMENTS = {"text", "code", "json", "html", "exception"}  # their `body` is drawn as it is
MARKDOWN_OPTIONS = {"radio", "select_slider"}  # options drawn as Markdown (selectbox's and multiselect's are not)


def markdown_strings(at) -> list[tuple[str, str]]:
    """(element.field, text) of everything on the page and in the sidebar that Streamlit renders as Markdown:
    markdown, captions, headings, alerts, metric, button and widget labels and help, radio options, expander and tab
    labels, progress texts."""
    out = []
    for node in [*at.main, *at.sidebar]:
        proto, kind = getattr(node, "proto", None), getattr(node, "type", "")
        if proto is None or kind in PLAIN_ELEMENTS:
            continue
        if "type" in proto.DESCRIPTOR.oneofs_by_name and proto.WhichOneof("type"):  # a block: its own message
            proto = getattr(proto, proto.WhichOneof("type"))
        fields = proto.DESCRIPTOR.fields_by_name
        for name in MARKDOWN_FIELDS:
            value = getattr(proto, name) if name in fields else None
            if isinstance(value, str) and value:
                out.append((f"{kind}.{name}", value))
        if kind in MARKDOWN_OPTIONS:
            out += [(f"{kind}.options", str(o)) for o in proto.options]
    return out


@pytest.fixture(scope="module")
def demo():
    from rsr_core.data.demo import available_demo_students, load_demo

    if not available_demo_students():
        pytest.skip("no precomputed demo scores")
    return load_demo()


def check(at, where: str, seen: list) -> None:
    """No exception, and nothing Markdown-rendered draws an image, a link, HTML or math; note where the data
    was shown."""
    assert not at.exception, f"{where}: {at.exception[0].message}"
    strings = markdown_strings(at)
    bad = [(kind, text, drawn_markup(text)) for kind, text in strings if drawn_markup(text)]
    assert not bad, f"{where}: {bad}"
    seen += [(where, kind) for kind, text in strings if "beacon" in text]


def test_hostile_names_are_text_on_every_page(demo, tmp_path, monkeypatch):
    from streamlit.testing.v1 import AppTest

    from hostile_data import hostile_store, problem_id
    from rsr_core.ui import inspector as ui
    from rsr_core.ui.navigation import available_pages
    from tests.conftest import keep_app_navigation

    store, ids = hostile_store(tmp_path / "data", HOST, demo)
    keep_app_navigation(monkeypatch)
    monkeypatch.setenv("RSR_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("RSR_STORE", str(store))
    monkeypatch.setenv("RSR_DATA_ROOTS", str(tmp_path))
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=180).run()
    seen: list = []
    check(at, "start", seen)
    assert at.session_state["dataset"].from_store
    for spec in available_pages():
        at.switch_page(spec.path).run()
        check(at, spec.path, seen)
    # the inspector on a hostile trajectory, side by side with another of its problem
    at.switch_page("pages/inspector.py").run()
    at.text_input(key=ui.K_SEARCH).input("p03-terse").run()
    assert at.session_state["selected_trajectory"] == ids["p03-terse"]
    at.toggle(key=ui.K_COMPARE).set_value(True).run()
    check(at, "inspector, side by side", seen)
    # the teachers page listing a hostile teacher's trajectories
    at.switch_page("pages/teachers.py").run()
    focus = at.selectbox(key="teachers_focus")
    focus.set_value(focus.options[0]).run()
    check(at, "teachers, one teacher", seen)
    # the selection page: a wrong candidate chosen by hand under "correct only", and a stale manual choice
    at.switch_page("pages/selection.py").run()
    at.checkbox(key="selection_correct_only").check().run()
    at.selectbox(key="selection_problem").set_value(problem_id(HOST, "p03")).run()
    at.selectbox(key="selection_candidate").set_value(ids["p03-terse"]).run()
    check(at, "selection, a wrong candidate", seen)
    at.button(key="selection_choose").click().run()
    at.session_state["selection_overrides"] = {**at.session_state["selection_overrides"], "gone": ids["p01-calculus"]}
    at.run()
    check(at, "selection, manual choices", seen)
    kinds, places = {kind for _, kind in seen}, {where for where, _ in seen}
    assert {"markdown.body", "caption.body", "button.label", "warning.body"} <= kinds, kinds
    assert {"pages/overview.py", "pages/inspector.py", "pages/selection.py", "inspector, side by side",
            "teachers, one teacher", "selection, a wrong candidate", "selection, manual choices"} <= places, places

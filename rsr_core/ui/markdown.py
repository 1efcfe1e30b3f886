"""Data values in Streamlit Markdown, shown as their literal text.

Streamlit renders Markdown in `st.markdown`, captions, alerts (`st.info`, `st.warning`, `st.error`, `st.success`),
progress and spinner texts, and in the labels and help texts of widgets, metrics, buttons, expanders and tabs
(radio options too; selectbox and multiselect options are plain text). A value from a dataset placed there is read
as Markdown as well: a teacher named `![x](http://host/p.png)` would make the browser of everyone who opens the
dataset fetch that URL, `[text](url)` would be a link, `$...$` a formula. So every data value shown there (names,
ids, prompts, paths, messages that quote them) goes through one of:

- `md_text(value)`: backslash-escapes what CommonMark, GFM and Streamlit read as markup, so that the value renders
  as its own text: always ``\\ ` * { } [ ] ( ) # ! | < > ~ $ &``; `:` before a letter (Streamlit's directives
  such as `:red[...]`); `_` unless between two letters or digits (where it cannot emphasise); at the start of a
  line `-`, `+`, `=` and the `.` of `1. ` (lists, headings, rules), the line's leading blanks dropped (they show
  nothing, or would start a code block). GFM turns raw URLs and e-mail addresses into links after escapes are
  resolved, so an invisible word joiner (U+2060) goes into `://`, `www.` and `name@host.`. Emoji and icon codes
  (`:smile:`, `:material/home:`) may still be drawn as such: no link, nothing fetched.
- `md_code(value)`: the value as an inline code span, its fence longer than any run of backticks in it (line breaks
  become spaces, as they do in a code span, so it cannot end the paragraph).
- `md_message(text)`: a message that marks values as code spans itself (the readers' and the path checks'
  messages): each code span through `md_code`, the text around them through `md_text`.
"""
from __future__ import annotations

import re

WORD_JOINER = "\u2060"
_ALWAYS = re.compile(r"[\\`*{}\[\]()#!|<>~$&]|:(?=[A-Za-z])|(?<![^\W_])_|_(?![^\W_])")
_LINE_START = re.compile(r"^([ \t]*)(\d+(?=\.(?:\s|$))|(?=[-+=]))", re.MULTILINE)  # list, heading, rule markers
_AUTOLINK = re.compile(r"(?<=:)(?=//)|(?i:(?<=www)(?=\.))|(?<=[\w.+-])(?=@[\w-]+\.)")
_CODE_SPAN = re.compile(r"(?<!`)(`+)(?!`)(.+?)(?<!`)\1(?!`)", re.DOTALL)


def md_text(value: object) -> str:
    """`value` as Markdown that Streamlit renders as the value's own text (see the module's docstring)."""
    text = re.sub(r"\r\n?", "\n", str(value))
    text = re.sub(r"\n[ \t]+", "\n", text)  # leading blanks of a line show nothing; 4 would start a code block
    text = _ALWAYS.sub(r"\\\g<0>", text)
    text = _LINE_START.sub(r"\1\2\\", text)
    return _AUTOLINK.sub(WORD_JOINER, text)


def md_code(value: object) -> str:
    """`value` as one inline code span (backticks included), whatever backticks or line breaks it holds."""
    text = re.sub(r"\r\n?|\n", " ", str(value)) or " "
    fence = "`" * (max((len(run) for run in re.findall(r"`+", text)), default=0) + 1)
    pad = " " if text[0] == "`" or text[-1] == "`" or (text[0] == text[-1] == " " and text.strip()) else ""
    return f"{fence}{pad}{text}{pad}{fence}"


def md_message(text: object) -> str:
    """A message whose code spans (`...`) stay code spans and whose other text is escaped by `md_text`."""
    text, out, last = str(text), [], 0
    for m in _CODE_SPAN.finditer(text):
        code = m.group(2)
        if len(code) > 2 and code[0] == code[-1] == " " and code.strip():
            code = code[1:-1]  # the space a code span strips on each side
        out += [md_text(text[last:m.start()]), md_code(code)]
        last = m.end()
    out.append(md_text(text[last:]))
    return "".join(out)

"""Text files decoded so that one bad byte costs one line, not the file.

The encoding is told by the byte-order mark: UTF-8 (with or without the mark), UTF-16 LE or BE (with it, or
without it when the file starts with two ASCII characters, as JSON and CSV files do). Lines are decoded one at
a time; a line holding a byte that is not text in that encoding, or a NUL character, comes with a problem that
names the byte and its column, and every other line is read. `read_text` decodes a whole file and names the line
of its first bad byte.
"""
from __future__ import annotations

import codecs
import io
import re
from pathlib import Path
from typing import Iterator

BOMS = ((codecs.BOM_UTF8, "utf-8", "UTF-8"), (codecs.BOM_UTF16_LE, "utf-16-le", "UTF-16"),
        (codecs.BOM_UTF16_BE, "utf-16-be", "UTF-16"))
_MARK_ERRORS = "rsr-mark-bytes"
_BREAKS = re.compile("\r\n?|\n")  # line ends, as `text_lines` reads them
_ERRORS = [0]  # decoding errors met so far, in any file


def _mark_bytes(error: UnicodeDecodeError) -> tuple[str, int]:
    """Decoding error handler: each undecodable byte b becomes the lone surrogate U+DC00 + b, which no successful
    UTF-8 or UTF-16 decoding yields (surrogateescape does the same for bytes >= 0x80 only, not enough for UTF-16)."""
    _ERRORS[0] += 1
    return "".join(chr(0xDC00 + b) for b in error.object[error.start:error.end]), error.end


codecs.register_error(_MARK_ERRORS, _mark_bytes)


class BadText(ValueError):
    """A file that cannot be decoded, with the line where it goes wrong."""

    def __init__(self, line: int, message: str):
        super().__init__(f"line {line}: {message}")
        self.line, self.message = line, message


def encoding_of(head: bytes) -> tuple[str, int, str]:
    """(codec, length of the byte-order mark, name for messages) of a file whose first 4 bytes are `head`."""
    for bom, codec, name in BOMS:
        if head.startswith(bom):
            return codec, len(bom), name
    for codec, zeros, chars in (("utf-16-le", head[1::2], head[0::2]), ("utf-16-be", head[0::2], head[1::2])):
        if len(head) == 4 and zeros == b"\0\0" and all(0 < c < 0x80 for c in chars):  # two ASCII characters
            return codec, 0, "UTF-16"
    return "utf-8", 0, "UTF-8"


def _problem(name: str, byte: int, column: int) -> str:
    return f"not {name} text (byte 0x{byte:02x} at column {column}); save the file as UTF-8"


def line_problem(line: str, name: str = "UTF-8") -> str | None:
    """What is wrong with one decoded line (bad bytes marked by the error handler, a NUL character), or None."""
    if not line.isascii():
        try:
            line.encode("utf-8")  # fails at the first lone surrogate, i.e. at the first marked byte; fast otherwise
        except UnicodeEncodeError as e:
            return _problem(name, ord(line[e.start]) - 0xDC00, e.start + 1)
    nul = line.find("\x00")
    return None if nul < 0 else f"not text (NUL character at column {nul + 1}); save the file as UTF-8"


def text_lines(path: str | Path, keep_ends: bool = False) -> Iterator[tuple[int, str, str | None]]:
    """Yield (line number from 1, decoded line, problem or None) for every line of a file.

    Lines end at \\n, \\r\\n or \\r; the ending is given as \\n, or as it is with `keep_ends` (for the csv module,
    so that a quoted field keeps its newlines; twice as slow). A line with a problem is still yielded, its bad bytes
    as lone surrogates U+DC00 + byte, so that callers can tell where a multi-line record ends."""
    with open(path, "rb") as raw:
        codec, skip, name = encoding_of(raw.read(4))
        raw.seek(skip)
        before = _ERRORS[0]
        text = io.TextIOWrapper(raw, encoding=codec, errors=_MARK_ERRORS, newline="" if keep_ends else None)
        for n, line in enumerate(text, start=1):
            # no decoding error since the file was opened: no marks to look for (the common case, at no cost)
            yield n, line, line_problem(line, name) if _ERRORS[0] != before or "\x00" in line else None


def read_text(path: str | Path) -> str:
    """The whole text of a file (encoding told by its byte-order mark, as for `text_lines`). Raises BadText naming
    the line and column of the first byte that is not text."""
    data = Path(path).read_bytes()
    codec, skip, name = encoding_of(data[:4])
    try:
        return data[skip:].decode(codec)
    except UnicodeDecodeError as e:
        before = data[skip:skip + e.start].decode(codec, errors="replace")
        breaks = list(_BREAKS.finditer(before))
        column = len(before) - (breaks[-1].end() if breaks else 0) + 1
        raise BadText(len(breaks) + 1, _problem(name, data[skip + e.start], column)) from None

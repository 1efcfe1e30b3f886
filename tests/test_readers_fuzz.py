"""Property-based tests of the readers: no input crashes them, and bad lines cost themselves only.

Bounded: a fixed number of examples drawn from a seed derived from each test (`derandomize`), fixed `@example`s, no
example database, no deadline; the whole file runs in well under 30 s.
"""
import csv
import io
import json

from hypothesis import example, given, settings
from hypothesis import strategies as st

from rsr_core.data.formats import RecordError, read_trajectories
from rsr_core.data.sources import record_fields
from rsr_core.data.trajectory import is_missing

BOUNDED = settings(max_examples=150, deadline=None, derandomize=True, database=None)
FEW = settings(BOUNDED, max_examples=60)

# -- strategies -------------------------------------------------------------------------------------------------

text = st.text(st.characters(exclude_categories=("Cs",)), max_size=40)
json_values = st.recursive(st.none() | st.booleans() | st.integers() | st.floats() | text,
                           lambda inner: st.lists(inner, max_size=4) | st.dictionaries(text, inner, max_size=4),
                           max_leaves=8)
FIELDS = ["messages", "conversations", "instruction", "input", "output", "system", "prompt", "question", "problem",
          "response", "answer", "solution", "gemini_output", "reasoning_content", "thinking", "id", "problem_id",
          "teacher", "run", "correct", "is_correct"]
message = st.fixed_dictionaries({}, optional={
    "role": st.sampled_from(["user", "assistant", "Assistant", "system", "tool"]) | json_values,
    "content": text | json_values | st.sampled_from(["None", "NaN", "null", " N/A ", "<think>a</think>b"]),
    "reasoning_content": text | json_values, "thinking": text})
record_value = (json_values | st.sampled_from(["None", "NaN", "null", "", " n/a "])
                | st.lists(message, max_size=3) | st.lists(st.fixed_dictionaries({"from": text, "value": text})))
record_dicts = st.dictionaries(st.sampled_from(FIELDS) | text, record_value, max_size=5)


def _answer(s: str) -> bool:
    """Text that is scored as a response: not blank, not a missing-value marker, no think tag to reshape it."""
    return bool(s.strip()) and not is_missing(s) and "think>" not in s


answers = st.text(st.characters(exclude_categories=("Cs",), exclude_characters="\x00"), min_size=1,
                  max_size=30).filter(_answer)


def _not_json(s: str) -> bool:
    try:
        json.loads(s)
    except ValueError:
        return bool(s.strip())
    return False


@st.composite
def mixed_lines(draw):
    """(lines as bytes, the ids of the valid records in order, the line numbers of the bad lines).

    A line is a valid messages record, a blank line, or a bad one: invalid JSON, a byte that is not UTF-8, a JSON
    value that is not an object, a record without an assistant message to score."""
    items = draw(st.lists(st.sampled_from(["valid", "valid", "blank", "invalid JSON", "bad byte", "not an object",
                                           "no answer"]), max_size=12))
    lines, valid, bad = [], [], []
    for n, kind in enumerate(items, start=1):
        rid = f"r{n}"
        messages = [{"role": "user", "content": draw(text)},
                    {"role": draw(st.sampled_from(["assistant", "Assistant"])), "content": draw(answers)}]
        record = {"id": rid, "messages": messages}
        if kind == "valid":
            line = json.dumps(record, ensure_ascii=draw(st.booleans())).encode()
            valid.append(rid)
        elif kind == "blank":
            line = draw(st.sampled_from([b"", b"  ", b"\t"]))
        elif kind == "invalid JSON":
            line = draw(st.text(st.characters(exclude_categories=("Cs",), exclude_characters="\r\n\x00"),
                                min_size=1, max_size=30).filter(_not_json)).encode()
        elif kind == "bad byte":
            good = json.dumps(record).encode()  # ASCII: any byte >= 0x80 put into it is not UTF-8
            at = draw(st.integers(0, len(good)))
            line = good[:at] + bytes([draw(st.integers(0x80, 0xFF))]) + good[at:]
        elif kind == "not an object":
            value = draw(st.one_of(st.lists(json_values, max_size=3), st.integers(), text, st.none()))
            line = json.dumps(value).encode()
        else:
            messages[1]["content"] = draw(st.sampled_from(["", "None", "NaN", "null"]))
            line = json.dumps({"id": rid, "messages": draw(st.sampled_from([messages, messages[:1]]))}).encode()
        lines.append(line)
        if kind not in ("valid", "blank"):
            bad.append(n)
    return lines, valid, bad


def _check_errors(errors, lines_in_file: int | None = None):
    for e in errors:
        assert isinstance(e, RecordError) and str(e)
        if lines_in_file is not None:  # line-based files: every error names a line of the file
            assert e.unit == "line" and e.record is not None and 1 <= e.record <= lines_in_file, str(e)


# -- no input crashes the readers -------------------------------------------------------------------------------

def _mutated(draw_bytes: bytes, flips: list[tuple[int, int]]) -> bytes:
    data = bytearray(draw_bytes)
    for at, byte in flips:
        if data:
            data[at % len(data)] = byte
    return bytes(data)


@st.composite
def file_bytes(draw, suffix):
    """Arbitrary bytes, or a well-formed file of arbitrary records in some encoding with some bytes changed."""
    if draw(st.booleans()):
        return draw(st.binary(max_size=400))
    records = draw(st.lists(record_dicts, max_size=4))
    if suffix == ".jsonl":
        content = "".join(json.dumps(r, ensure_ascii=False) + draw(st.sampled_from(["\n", "\r\n", "\r"]))
                          for r in records)
    elif suffix == ".json":
        content = json.dumps(draw(st.sampled_from([records, records[0] if records else {}, {"data": records}])))
    else:
        content = _csv_text(records)
    encoding, bom = draw(st.sampled_from([("utf-8", b""), ("utf-8", b"\xef\xbb\xbf"), ("utf-16-le", b"\xff\xfe"),
                                          ("utf-16-be", b"\xfe\xff"), ("utf-16-le", b""), ("latin-1", b"")]))
    data = bom + content.encode(encoding, errors="replace")
    return _mutated(data, draw(st.lists(st.tuples(st.integers(0, 10**6), st.integers(0, 255)), max_size=3)))


def _csv_text(records: list[dict]) -> str:
    header = list(dict.fromkeys(k for r in records for k in r))
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(header)
    for r in records:
        writer.writerow([v if isinstance(v, str) else json.dumps(v) if k in r else "" for k in header
                         for v in [r.get(k)]])
    return out.getvalue()


def _read_any(path, data: bytes):
    path.write_bytes(data)
    ts, errors = read_trajectories(path)
    line_based = path.suffix in (".jsonl", ".csv")
    _check_errors(errors, data.count(b"\n") + data.count(b"\r") + 1 if line_based else None)
    for t in ts:
        assert any(m["role"] == "assistant" for m in t.messages) and t.response.strip()
    assert isinstance(record_fields(path), list)
    return ts, errors


@BOUNDED
@given(data=file_bytes(".jsonl"))
def test_any_bytes_in_a_jsonl_file(tmp_path_factory, data):
    _read_any(tmp_path_factory.mktemp("fuzz") / "x.jsonl", data)


@BOUNDED
@given(data=file_bytes(".csv"))
def test_any_bytes_in_a_csv_file(tmp_path_factory, data):
    _read_any(tmp_path_factory.mktemp("fuzz") / "x.csv", data)


@BOUNDED
@given(data=file_bytes(".json"))
@example(data=b"0")  # documents that are no object or array
@example(data=b'"text"')
@example(data=b'{"data": [1, {}]}')
def test_any_bytes_in_a_json_file(tmp_path_factory, data):
    _, errors = _read_any(tmp_path_factory.mktemp("fuzz") / "x.json", data)
    # a file that cannot be read gets a message of ours (invalid JSON; not text, with the line), never a traceback's
    assert all(e.unit == "record" or e.message.startswith("cannot read file: ") for e in errors), errors
    assert not any("Error: " in e.message for e in errors), errors


@BOUNDED
@given(values=st.lists(json_values, max_size=8), ensure_ascii=st.booleans())
def test_any_json_value_per_line_is_one_trajectory_or_one_error(tmp_path_factory, values, ensure_ascii):
    f = tmp_path_factory.mktemp("fuzz") / "values.jsonl"
    f.write_text("".join(json.dumps(v, ensure_ascii=ensure_ascii) + "\n" for v in values), encoding="utf-8")
    ts, errors = read_trajectories(f)
    _check_errors(errors, len(values))
    assert len(ts) + len(errors) == len(values)


@settings(BOUNDED, max_examples=100)
@given(records=st.lists(record_dicts, max_size=5))
def test_any_record_dicts_in_jsonl_json_and_csv(tmp_path_factory, records):
    folder = tmp_path_factory.mktemp("fuzz")
    (folder / "r.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
    (folder / "r.json").write_text(json.dumps(records), encoding="utf-8")
    (folder / "r.csv").write_text(_csv_text(records) if records else "", encoding="utf-8", newline="")
    for name in ("r.jsonl", "r.json"):  # one outcome per record: a trajectory or an error
        ts, errors = read_trajectories(folder / name)
        _check_errors(errors)
        assert len(ts) + len(errors) == len(records), name
    ts, errors = read_trajectories(folder / "r.csv")  # rows of blank cells are no records in CSV
    _check_errors(errors)
    assert len(ts) + len(errors) <= len(records)


# -- valid records survive bad lines ------------------------------------------------------------------------------

@BOUNDED
@given(mixed=mixed_lines(), ending=st.sampled_from([b"\n", b"\r\n"]), bom=st.sampled_from([b"", b"\xef\xbb\xbf"]))
def test_every_valid_jsonl_record_is_read_and_each_bad_line_is_one_error(tmp_path_factory, mixed, ending, bom):
    lines, valid, bad = mixed
    f = tmp_path_factory.mktemp("fuzz") / "mixed.jsonl"
    f.write_bytes(bom + b"".join(line + ending for line in lines))
    ts, errors = read_trajectories(f)
    assert [t.trajectory_id for t in ts] == valid
    assert [e.record for e in errors] == bad, [str(e) for e in errors]
    _check_errors(errors, len(lines))


@FEW
@given(mixed=mixed_lines())
def test_every_valid_csv_row_is_read_and_each_bad_row_is_one_error(tmp_path_factory, mixed):
    """The same lines as CSV rows (id, messages as JSON): a byte that is not UTF-8 goes into the row's line."""
    lines, valid, bad = mixed
    out = [b"id,messages\r\n"]
    for n, line in enumerate(lines, start=1):
        try:
            record = json.loads(line)
        except ValueError:  # invalid JSON, or a bad byte: the row carries the line's text as its messages
            record = None
        if isinstance(record, dict):
            row = [record["id"], json.dumps(record["messages"])]
        else:
            row = [f"b{n}", line.decode("utf-8", errors="surrogateescape") if record is None else json.dumps(record)]
        if not line.strip():
            out.append(b"\r\n")
            continue
        buffer = io.StringIO()
        csv.writer(buffer).writerow(row)
        out.append(buffer.getvalue().encode("utf-8", errors="surrogateescape"))
    f = tmp_path_factory.mktemp("fuzz") / "mixed.csv"
    f.write_bytes(b"".join(out))
    ts, errors = read_trajectories(f)
    assert [t.trajectory_id for t in ts] == valid
    assert [e.record for e in errors] == [n + 1 for n in bad], [str(e) for e in errors]  # line 1 is the header

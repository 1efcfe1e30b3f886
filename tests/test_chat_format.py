"""Response spans for any chat template, the plain fallback, and flagged truncation."""
import copy

import pytest

from rsr_core.engine.chat_format import TemplateError, encode, render_plain

CONV = [{"role": "system", "content": "Be brief."},
        {"role": "user", "content": "What is 2 + 3?"},
        {"role": "assistant", "content": "2 + 3 = 5."},
        {"role": "user", "content": "And times 4?"},
        {"role": "assistant", "content": "5 x 4 = 20. "}]


@pytest.fixture(scope="module")
def tok(student):
    return student.tokenizer


def test_every_assistant_turn_is_scored_and_nothing_else(tok):
    enc = encode(CONV, tok)
    assert sorted(set(enc.turn.tolist())) == [0, 1]
    assert "".join(t for t, k in zip(enc.tokens, enc.turn) if k == 0) == "2 + 3 = 5."
    assert "".join(t for t, k in zip(enc.tokens, enc.turn) if k == 1) == "5 x 4 = 20. "
    scored = {tok.convert_ids_to_tokens(enc.input_ids[p]) for p in enc.positions}
    assert "<|im_end|>" not in scored and "<|im_start|>" not in scored
    # the same ids as tokenizing the template rendering directly
    direct = tok.apply_chat_template(CONV, tokenize=True, return_dict=True)["input_ids"]
    assert enc.input_ids == list(direct)


def test_offsets_point_into_each_turns_content(tok):
    enc = encode(CONV, tok)
    contents = [m["content"] for m in CONV if m["role"] == "assistant"]
    for text, (a, b), k in zip(enc.tokens, enc.offsets.tolist(), enc.turn.tolist()):
        assert contents[k][a:b] == text


def test_a_template_that_strips_whitespace_is_handled(tok):
    t = copy.deepcopy(tok)
    t.chat_template = ("{% for m in messages %}<<{{ m['role'] }}>>{{ m['content'] | trim }}</s>{% endfor %}"
                       "{% if add_generation_prompt %}<<assistant>>{% endif %}")
    conv = [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "  Hello there.  "}]
    enc = encode(conv, t)
    assert "".join(enc.tokens).strip() == "Hello there."


def test_a_template_that_drops_the_answer_is_reported(tok):
    t = copy.deepcopy(tok)
    t.chat_template = "{% for m in messages %}{% if m['role'] == 'user' %}{{ m['content'] }}{% endif %}{% endfor %}"
    with pytest.raises(TemplateError, match="assistant turn 0"):
        encode([{"role": "user", "content": "hi"}, {"role": "assistant", "content": "Hello"}], t)


def test_plain_fallback_without_a_chat_template(tok):
    t = copy.deepcopy(tok)
    t.chat_template = None
    text, spans = render_plain(CONV[1:3])
    assert text == "User: What is 2 + 3?\n\nAssistant: 2 + 3 = 5.\n\n"
    assert text[spans[0][0]:spans[0][1]] == "2 + 3 = 5."
    enc = encode(CONV[1:3], t)
    assert "".join(enc.tokens) == "2 + 3 = 5."


def test_truncation_is_flagged_and_cuts_the_response(tok):
    full = encode(CONV, tok)
    cut = encode(CONV, tok, max_len=len(full.input_ids) - 8)
    assert not full.truncated and cut.truncated
    assert len(cut.input_ids) == len(full.input_ids) - 8
    assert 0 < len(cut.positions) < len(full.positions)
    assert cut.positions.max() < len(cut.input_ids)


def test_stripped_turn_offsets_still_index_the_original_content(tok):
    t = copy.deepcopy(tok)
    t.chat_template = ("{% for m in messages %}<<{{ m['role'] }}>>{{ m['content'] | trim }}</s>{% endfor %}"
                       "{% if add_generation_prompt %}<<assistant>>{% endif %}")
    content = "  Hello there.  "
    enc = encode([{"role": "user", "content": "hi"}, {"role": "assistant", "content": content}], t)
    for text, (a, b) in zip(enc.tokens, enc.offsets.tolist()):
        assert content[a:b] == text

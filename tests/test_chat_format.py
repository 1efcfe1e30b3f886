"""The scored response is the teacher's verbatim trace under any chat template; the boundary rule; truncation."""
import copy
from pathlib import Path

import pytest

from rsr_core.data.trajectory import assistant_text
from rsr_core.engine.chat_format import TemplateError, encode, plain_render, splice, template_renderer

CONV = [{"role": "system", "content": "Be brief."},
        {"role": "user", "content": "What is 2 + 3?"},
        {"role": "assistant", "content": "2 + 3 = 5."},
        {"role": "user", "content": "And times 4?"},
        {"role": "assistant", "content": "5 x 4 = 20. "}]
THINKING = "Okay, the price of one pencil first.\n0.75 / 3 = 0.25.\nSo 14 pencils cost 3.50.\n"
TRACE = [{"role": "user", "content": "A shop sells pencils at 3 for $0.75. How much do 14 pencils cost?"},
         {"role": "assistant", "content": "14 x $0.25 = **$3.50**.", "reasoning_content": THINKING}]
TEMPLATES = Path(__file__).resolve().parents[2] / "shared" / "checks" / "templates"


@pytest.fixture(scope="module")
def tok(student):
    return student.tokenizer


def with_template(tok, template):
    t = copy.deepcopy(tok)
    t.chat_template = template
    return t


def published(tok, name):
    path = TEMPLATES / name
    if not path.is_file():
        pytest.skip(f"{path} is not present (published chat templates in ../shared/checks/templates)")
    return with_template(tok, path.read_text())


def response_of(enc, k=0):
    return "".join(t for t, turn in zip(enc.tokens, enc.turn) if turn == k)


def test_every_assistant_turn_is_scored_and_nothing_else(tok):
    enc = encode(CONV, tok)
    assert sorted(set(enc.turn.tolist())) == [0, 1]
    assert response_of(enc, 0) == "2 + 3 = 5." and response_of(enc, 1) == "5 x 4 = 20. "
    scored = {tok.convert_ids_to_tokens(enc.input_ids[p]) for p in enc.positions}
    assert "<|im_end|>" not in scored and "<|im_start|>" not in scored
    # a template that renders assistant text verbatim: exactly the ids of tokenizing its own rendering
    direct = tok.apply_chat_template(CONV, tokenize=True, return_dict=True)["input_ids"]
    assert enc.input_ids == list(direct) and not enc.rewritten


def test_offsets_point_into_each_turns_response(tok):
    for conv in (CONV, TRACE):
        enc = encode(conv, tok)
        texts = [assistant_text(m) for m in conv if m["role"] == "assistant"]
        for text, (a, b), k in zip(enc.tokens, enc.offsets.tolist(), enc.turn.tolist()):
            assert texts[k][a:b] == text


def test_reasoning_is_scored_in_the_canonical_form(tok):
    enc = encode(TRACE, tok)
    assert response_of(enc) == "<think>\n" + THINKING + "\n</think>\n\n14 x $0.25 = **$3.50**."
    assert not enc.rewritten  # SmolLM2's template writes the content verbatim


def test_a_template_that_strips_whitespace_scores_the_verbatim_text(tok):
    t = with_template(tok, "{% for m in messages %}<<{{ m['role'] }}>>{{ m['content'] | trim }}</s>{% endfor %}"
                           "{% if add_generation_prompt %}<<assistant>>{% endif %}")
    content = "  Hello there.  "
    enc = encode([{"role": "user", "content": "hi"}, {"role": "assistant", "content": content}], t)
    assert response_of(enc) == content and enc.rewritten
    text, spans, _ = splice([{"role": "user", "content": "hi"}, {"role": "assistant", "content": content}],
                            template_renderer(t))
    assert text == "<<user>>hi</s><<assistant>>  Hello there.  </s>" and text[spans[0][0]:spans[0][1]] == content


def test_qwen3_template_scores_the_whole_trace(tok):
    t = published(tok, "qwen3.jinja")
    own = t.apply_chat_template([{"role": m["role"], "content": assistant_text(m)} for m in TRACE], tokenize=False)
    assert "<think>\n" + THINKING + "\n</think>" not in own  # Qwen3 strips the newline that ends the thinking
    enc = encode(TRACE, t)
    assert enc.rewritten and response_of(enc) == assistant_text(TRACE[1])
    text, spans, _ = splice(TRACE, template_renderer(t))
    assert text[:spans[0][0]].endswith("<|im_start|>assistant\n") and text[spans[0][1]:] == "<|im_end|>\n"


def test_r1_distill_template_scores_the_thinking_it_would_drop(tok):
    t = published(tok, "deepseek_r1_distill_qwen.jinja")
    own = t.apply_chat_template([{"role": m["role"], "content": assistant_text(m)} for m in TRACE], tokenize=False)
    assert "price of one pencil" not in own  # the template keeps only what follows </think>
    enc = encode(TRACE, t)
    assert enc.rewritten and response_of(enc) == assistant_text(TRACE[1])
    text, spans, _ = splice(TRACE, template_renderer(t))
    assert text[:spans[0][0]].endswith("<｜Assistant｜>") and text[spans[0][1]:] == "<｜end▁of▁sentence｜>"


def test_multi_turn_traces_under_qwen3(tok):
    t = published(tok, "qwen3.jinja")
    conv = [TRACE[0], TRACE[1], {"role": "user", "content": "And 28 pencils?"},
            {"role": "assistant", "content": "Twice as much: $7.00.", "reasoning_content": "Double it.\n"}]
    enc = encode(conv, t)
    assert response_of(enc, 0) == assistant_text(conv[1]) and response_of(enc, 1) == assistant_text(conv[3])
    text, spans, _ = splice(conv, template_renderer(t))
    between = text[spans[0][1]:spans[1][0]]
    assert between == "<|im_end|>\n<|im_start|>user\nAnd 28 pencils?<|im_end|>\n<|im_start|>assistant\n"


def test_a_generation_prompt_that_opens_the_think_block_is_not_doubled(tok):
    t = with_template(tok, "{% for m in messages %}{% if m['role'] == 'user' %}<U>{{ m['content'] }}{% else %}"
                           "<A>{{ m['content'].split('</think>')[-1] }}<E>{% endif %}{% endfor %}"
                           "{% if add_generation_prompt %}<A><think>\n{% endif %}")
    text, spans, rewritten = splice(TRACE, template_renderer(t))
    assert text.count("<think>") == 1 and text[spans[0][0]:].startswith("<think>\n" + THINKING) and rewritten
    assert response_of(encode(TRACE, t)) == assistant_text(TRACE[1])


def test_a_template_that_drops_the_answer_names_the_way_out(tok):
    t = with_template(tok, "{% for m in messages %}{% if m['role'] == 'user' %}{{ m['content'] }}{% endif %}"
                           "{% endfor %}")
    with pytest.raises(TemplateError, match="assistant turn 0 cannot be placed.*--plain-format"):
        encode([{"role": "user", "content": "hi"}, {"role": "assistant", "content": "Hello"}], t)


def test_a_template_that_refuses_the_conversation_names_the_cause(tok):
    t = with_template(tok, "{% if messages[0]['role'] == 'system' %}{{ raise_exception('System role not "
                           "supported') }}{% endif %}{% for m in messages %}{{ m['content'] }}{% endfor %}")
    with pytest.raises(TemplateError, match="System role not supported.*--plain-format"):
        encode(CONV, t)


def test_plain_format_without_a_chat_template(tok):
    t = with_template(tok, None)
    assert plain_render(CONV[1:3]) == "User: What is 2 + 3?\n\nAssistant: 2 + 3 = 5.\n\n"
    assert plain_render(CONV[1:2], True) == "User: What is 2 + 3?\n\nAssistant: "
    enc = encode(CONV[1:3], t)
    assert response_of(enc) == "2 + 3 = 5."
    assert enc.input_ids == t(plain_render(CONV[1:3]))["input_ids"] and enc.positions.min() >= 1


@pytest.mark.parametrize("content", ["Let me see: 5.", "  Two leading spaces.", "\n\nTwo newlines first.",
                                     " One space.", "\tA tab."])
@pytest.mark.parametrize("plain", [False, True])
def test_the_first_character_is_scored_whatever_the_boundary(tok, content, plain):
    t = with_template(tok, None) if plain else tok
    conv = [{"role": "user", "content": "Q?"}, {"role": "assistant", "content": content}]
    enc = encode(conv, t)
    assert response_of(enc) == content and enc.offsets[0, 0] == 0
    first = tok.decode([enc.input_ids[enc.positions[0]]])
    assert content[0] in first  # the first scored token covers the response's first character
    # a straddling token counts once: the response is scored from the token that holds its first character
    text, spans, _ = splice(conv, template_renderer(t) if not plain else plain_render)
    offs = t(text, add_special_tokens=plain, return_offsets_mapping=True)["offset_mapping"]
    holder = next(i for i, (a, b) in enumerate(offs) if a <= spans[0][0] < b)
    assert enc.positions[0] == holder


def test_truncation_is_flagged_and_cuts_the_response(tok):
    full = encode(CONV, tok)
    cut = encode(CONV, tok, max_len=len(full.input_ids) - 8)
    assert not full.truncated and cut.truncated
    assert len(cut.input_ids) == len(full.input_ids) - 8
    assert 0 < len(cut.positions) < len(full.positions)
    assert cut.positions.max() < len(cut.input_ids)


def test_token_strings_concatenate_back_over_the_demo_pool(tok):
    """Every demo response, encoded for the default student and for the plain format, and the bundled
    precomputed token tables of every demo student: the token texts give each response back from its first
    character."""
    from rsr_core.data.demo import CANDIDATES, DEMO_STORE, available_demo_students
    from rsr_core.data.formats import read_trajectories
    from rsr_core.data.store import ResultsStore

    trajectories, errors = read_trajectories(CANDIDATES)
    assert errors == [] and any(t.has_reasoning for t in trajectories)
    plain = with_template(tok, None)
    for t in trajectories:
        for tk in (tok, plain):
            enc = encode(t.messages, tk)
            assert response_of(enc) == t.response, t.trajectory_id
    responses = {t.trajectory_id: t.response for t in trajectories}
    students = available_demo_students()
    assert students
    store = ResultsStore(DEMO_STORE)
    for student in students:
        assert store.scored_ids(student) == set(responses), student
        bad = [tid for tid in responses if "".join(store.token_scores(student, tid).tokens) != responses[tid]]
        assert bad == [], f"{student}: {bad[:3]}"

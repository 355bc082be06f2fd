"""The base model for LoRA training: a GGUF file dequantized once into a transformers folder, reloaded from there.

transformers reads GGUF directly, but dequantizing and converting the tokenizer takes ~40 s (SmolLM2-135M) to
~2 min (Qwen2.5-0.5B) each time on 2 shared cores; the saved folder reloads in ~0.5 s / ~2.7 s once the model code
is imported (bench/finetune.py). The folder is keyed by the GGUF's sha256, so a replaced file is converted anew.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import re
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from outcrop.errors import ModelError, ModelNotReady

if TYPE_CHECKING:
    from transformers import PreTrainedModel, PreTrainedTokenizerBase

_SHA256 = re.compile(r"^[0-9a-f]{64}$")
SOURCE_FILE = "outcrop-source.json"  # written last into every converted folder: what it was made from


def gguf_sha256(gguf_path: Path) -> str:
    """The file's sha256: from the `<file>.sha256` sidecar model packs leave once verified, else hashed."""
    sidecar = gguf_path.with_name(gguf_path.name + ".sha256")
    # A sidecar older than the file describes an earlier file; hash instead of trusting it.
    if sidecar.exists() and sidecar.stat().st_mtime >= gguf_path.stat().st_mtime:
        digest = sidecar.read_text().strip().lower()
        if _SHA256.match(digest):
            return digest
    h = hashlib.sha256()
    with gguf_path.open("rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()


def converted_base_dir(gguf_path: str | Path, cache_dir: Path) -> Path:
    """The transformers folder (weights, config, tokenizer) converted from `gguf_path`, converting it first if absent.

    Written to a temporary folder and renamed into place, so a crash never leaves a half-written cache; a lock
    file keeps two processes from converting the same file at once.
    """
    gguf_path = Path(gguf_path)
    if not gguf_path.is_file():
        raise ModelNotReady(f"base model file {gguf_path} does not exist")
    digest = gguf_sha256(gguf_path)
    cache_dir.mkdir(parents=True, exist_ok=True)
    target = cache_dir / f"{gguf_path.stem}-{digest[:16]}"
    if (target / SOURCE_FILE).exists():
        return target
    with _locked(cache_dir / f".{target.name}.lock"):
        if (target / SOURCE_FILE).exists():  # another process finished while we waited
            return target
        shutil.rmtree(target, ignore_errors=True)  # a folder without its source file is not ours to trust
        work = Path(tempfile.mkdtemp(prefix=f".{target.name}-", dir=cache_dir))
        try:
            _convert(gguf_path, work)
            (work / SOURCE_FILE).write_text(json.dumps({"gguf": gguf_path.name, "sha256": digest,
                                                        "transformers": _transformers_version()}))
            work.rename(target)
        finally:
            shutil.rmtree(work, ignore_errors=True)
    return target


def load_base(gguf_path: str | Path, cache_dir: Path, dtype: Any = None) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    """The base model (float32 unless `dtype` says otherwise) and its tokenizer, from the converted folder."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    folder = converted_base_dir(gguf_path, cache_dir)
    tokenizer = AutoTokenizer.from_pretrained(folder, local_files_only=True)
    model = AutoModelForCausalLM.from_pretrained(folder, dtype=dtype or torch.float32, local_files_only=True)
    return model, tokenizer


def _convert(gguf_path: Path, out: Path) -> None:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    folder, name = str(gguf_path.parent), gguf_path.name
    try:
        tokenizer = AutoTokenizer.from_pretrained(folder, gguf_file=name, local_files_only=True)
        model = AutoModelForCausalLM.from_pretrained(folder, gguf_file=name, dtype=torch.float32, local_files_only=True)
    except (ValueError, KeyError, NotImplementedError, OSError) as e:  # an architecture transformers cannot read
        raise ModelError(f"cannot load {name} for training: {e}") from e
    # The GGUF loader marks the model "quantized with gguf" even though it dequantized every weight into plain
    # Linear layers, and save_pretrained refuses such a model; dropping the marker leaves an ordinary model.
    quantizer = getattr(model, "hf_quantizer", None)
    if quantizer is not None:
        quantizer.remove_quantization_config(model)
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)


def _transformers_version() -> str:
    import transformers

    return str(transformers.__version__)


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    with path.open("a") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)

"""Convert a peft LoRA adapter into a GGUF LoRA file that llama.cpp loads on top of a GGUF base model.

The format is llama.cpp's (convert_lora_to_gguf.py, src/llama-adapter.cpp): general.type "adapter",
adapter.type "lora", adapter.lora.alpha, and a pair of tensors "<base tensor>.lora_a" / ".lora_b" per
adapted matrix, in the same row-major (rank, in) / (out, rank) layout peft stores.
"""

from __future__ import annotations

import json
import math
import mmap
import os
import re
import struct
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from outcrop.errors import ModelNotReady

# Rotary heads: llama.cpp's converter permutes q/k rows for the "llama" arch (LlamaModel.permute in
# convert_hf_to_gguf.py), so the rows a LoRA adds to must be permuted the same way; qwen2 keeps HF order.
_PERMUTED_ARCHS = {"llama": True, "qwen2": False}

# LoraConfig settings whose effect a plain (A, B, alpha) GGUF pair cannot reproduce, with the value
# that means "not used".
_UNSUPPORTED: dict[str, Any] = {
    "use_dora": False,
    "lora_bias": False,
    "bias": "none",
    "fan_in_fan_out": False,
    "modules_to_save": None,
    "trainable_token_indices": None,
    "layer_replication": None,
    "target_parameters": None,
    "alora_invocation_tokens": None,
    "use_qalora": False,
    "use_bdlora": None,
    "kasa_config": None,
    "monteclora_config": None,
    "arrow_config": None,
}

# Initialisations that leave the base weights alone; pissa, olora, corda, loftq, lora_ga and mica rewrite them,
# so such an adapter (unless peft converted it on save) only fits the rewritten base.
_SAFE_INITS = (True, False, "gaussian", "eva", "orthogonal")

_LORA_NAME = re.compile(r"^base_model\.model\.(?P<module>.+)\.lora_(?P<part>[AB])\.weight$")


class Unconvertible(Exception):
    """The adapter cannot be expressed as a GGUF LoRA for this base; serve it with transformers instead."""


@dataclass(frozen=True)
class BaseInfo:
    """What conversion needs from the base GGUF: its arch, head counts, and tensor shapes (ne order)."""

    arch: str
    n_blocks: int
    n_head: int
    n_head_kv: int
    shapes: dict[str, tuple[int, ...]]


def read_base(base_gguf: Path) -> BaseInfo:
    """The base model's metadata and tensor shapes; the weights themselves are never read."""
    try:
        fields, shapes = _read_header(base_gguf)
    except OSError as exc:
        raise ModelNotReady(f"base model {base_gguf} cannot be read: {exc}") from exc
    except (ValueError, KeyError, struct.error) as exc:  # empty, truncated, or a layout this reader doesn't know
        raise Unconvertible(f"cannot parse base model {base_gguf.name}: {exc}") from exc

    def field(key: str) -> Any:
        if fields.get(key) is None:
            raise Unconvertible(f"base model {base_gguf.name} has no {key}")
        return fields[key]

    arch = str(field("general.architecture"))
    if arch not in _PERMUTED_ARCHS:
        raise Unconvertible(f"GGUF LoRA conversion does not support the {arch!r} architecture")
    n_head = int(field(f"{arch}.attention.head_count"))
    return BaseInfo(arch=arch, n_blocks=int(field(f"{arch}.block_count")), n_head=n_head,
                    n_head_kv=int(fields.get(f"{arch}.attention.head_count_kv") or n_head), shapes=shapes)


def _read_header(path: Path) -> tuple[dict[str, Any], dict[str, tuple[int, ...]]]:
    """A GGUF file's scalar metadata and tensor shapes (ne order), straight from its header.

    gguf.GGUFReader would do, but it builds numpy views of every vocabulary string first: 30 s for
    Qwen2.5's 150k-token vocabulary on a busy 2-core machine, against well under a second here.
    """
    with path.open("rb") as f, mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as buf:
        if buf[:4] != b"GGUF":
            raise Unconvertible(f"{path.name} is not a GGUF file")
        header = _Cursor(buf, 4)
        if header.scalar("I") < 2:
            raise Unconvertible(f"{path.name} is a GGUF v1 file; convert it again with a current llama.cpp")
        n_tensors, n_fields = header.scalar("Q"), header.scalar("Q")
        fields = {header.string(): header.value(header.scalar("I")) for _ in range(n_fields)}
        shapes = {}
        for _ in range(n_tensors):
            name = header.string()
            shapes[name] = tuple(header.scalar("Q") for _ in range(header.scalar("I")))
            header.pos += 4 + 8  # type, offset
        return fields, shapes


_SCALAR_FORMATS = {0: "B", 1: "b", 2: "H", 3: "h", 4: "I", 5: "i", 6: "f", 7: "?", 10: "Q", 11: "q", 12: "d"}
_STRING, _ARRAY = 8, 9  # gguf.GGUFValueType


class _Cursor:
    def __init__(self, buf: mmap.mmap, pos: int) -> None:
        self.buf, self.pos = buf, pos

    def scalar(self, fmt: str) -> Any:
        (value,) = struct.unpack_from("<" + fmt, self.buf, self.pos)
        self.pos += struct.calcsize("<" + fmt)
        return value

    def string(self) -> str:
        size = self.scalar("Q")
        self.pos += size
        return self.buf[self.pos - size:self.pos].decode("utf-8", "replace")

    def value(self, kind: int) -> Any:
        """A scalar or string; arrays (the vocabulary) are skipped and read as None."""
        if kind == _STRING:
            return self.string()
        if kind != _ARRAY:
            return self.scalar(_SCALAR_FORMATS[kind])
        item, count = self.scalar("I"), self.scalar("Q")
        if item in _SCALAR_FORMATS:
            self.pos += count * struct.calcsize("<" + _SCALAR_FORMATS[item])
        elif item == _STRING:
            for _ in range(count):
                size = self.scalar("Q")  # read before adding: scalar() moves pos itself
                self.pos += size
        else:
            for _ in range(count):
                self.value(item)
        return None


def convert_adapter(adapter_dir: Path, base_gguf: Path, out_path: Path) -> None:
    """Write `adapter_dir` (adapter_config.json + adapter_model.safetensors) as a GGUF LoRA for `base_gguf`.

    Raises Unconvertible when the adapter uses anything the GGUF LoRA format cannot express.
    """
    config = _read_config(adapter_dir)
    base = read_base(base_gguf)
    pairs = _pairs(_load_tensors(adapter_dir))
    alpha = float(config.get("lora_alpha") or 8)
    names = _name_map(base)
    tensors: list[tuple[str, np.ndarray]] = []
    for module, (lora_a, lora_b) in sorted(pairs.items()):
        target = names.get_name(module + ".weight", try_suffixes=(".weight",))
        if target is None or target not in base.shapes:
            raise Unconvertible(f"adapter module {module} has no matching tensor in the {base.arch} base model")
        _check_shapes(base, target, module, lora_a, lora_b)
        # llama.cpp scales every pair by alpha / rank; peft by its own per-module factor (rsLoRA, alpha_pattern).
        # Folding the ratio into B makes the two agree whatever peft used.
        ratio = _peft_scale(config, module, lora_a.shape[0]) / (alpha / lora_a.shape[0])
        if ratio != 1.0:
            lora_b = lora_b * np.float32(ratio)
        if _PERMUTED_ARCHS[base.arch] and target.endswith((".attn_q.weight", ".attn_k.weight")):
            heads = base.n_head if target.endswith(".attn_q.weight") else base.n_head_kv
            lora_b = _permute_rows(lora_b, heads)
        tensors.append((target + ".lora_a", lora_a))
        tensors.append((target + ".lora_b", lora_b))
    _write(out_path, base.arch, alpha, tensors)


def _read_config(adapter_dir: Path) -> dict[str, Any]:
    path = adapter_dir / "adapter_config.json"
    try:
        config: dict[str, Any] = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise Unconvertible(f"cannot read {path}: {exc}") from exc
    if config.get("peft_type", "LORA") != "LORA":
        raise Unconvertible(f"adapter type {config.get('peft_type')} is not LoRA")
    for key, unused in _UNSUPPORTED.items():
        value = config.get(key, unused)
        if value != unused and value not in (None, False, {}, []):
            raise Unconvertible(f"LoRA option {key}={value!r} has no GGUF LoRA equivalent")
    if config.get("init_lora_weights", True) not in _SAFE_INITS:
        raise Unconvertible(f"LoRA init {config['init_lora_weights']!r} modifies the base weights")
    return config


def _load_tensors(adapter_dir: Path) -> dict[str, np.ndarray]:
    path = adapter_dir / "adapter_model.safetensors"
    if not path.exists():
        raise Unconvertible(f"{adapter_dir} has no adapter_model.safetensors")
    from safetensors import SafetensorError
    from safetensors.torch import load_file  # torch reads bf16, which numpy cannot

    try:
        tensors = load_file(str(path), device="cpu")
    except (OSError, SafetensorError) as exc:
        raise Unconvertible(f"cannot read {path}: {exc}") from exc
    return {name: t.float().numpy() for name, t in tensors.items()}


def _pairs(tensors: dict[str, np.ndarray]) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """{module name: (lora_A (rank, in), lora_B (out, rank))}; anything else in the file is refused."""
    parts: dict[str, dict[str, np.ndarray]] = {}
    for name, tensor in tensors.items():
        match = _LORA_NAME.match(name)
        if match is None:
            raise Unconvertible(f"adapter tensor {name} is not a LoRA A/B matrix (embeddings, biases, saved modules)")
        parts.setdefault(match["module"], {})[match["part"]] = tensor
    pairs = {}
    for module, ab in parts.items():
        if set(ab) != {"A", "B"} or ab["A"].ndim != 2 or ab["B"].ndim != 2:
            raise Unconvertible(f"adapter module {module} lacks a 2-D lora_A/lora_B pair")
        pairs[module] = (ab["A"], ab["B"])
    if not pairs:
        raise Unconvertible("adapter has no LoRA tensors")
    return pairs


def _name_map(base: BaseInfo) -> Any:
    """gguf's map from transformers module names to GGUF tensor names, for this arch and depth."""
    from gguf import MODEL_ARCH_NAMES, get_tensor_name_map

    arch = next(a for a, name in MODEL_ARCH_NAMES.items() if name == base.arch)
    return get_tensor_name_map(arch, base.n_blocks)


def _check_shapes(base: BaseInfo, target: str, module: str, lora_a: np.ndarray, lora_b: np.ndarray) -> None:
    n_in, n_out = base.shapes[target][:2]  # GGUF shapes are (columns, rows)
    if lora_a.shape[1] != n_in or lora_b.shape[0] != n_out or lora_a.shape[0] != lora_b.shape[1]:
        raise Unconvertible(f"adapter module {module} has shapes {lora_a.shape}/{lora_b.shape}, "
                            f"base tensor {target} is {n_out}x{n_in}: wrong base model?")


def _peft_scale(config: dict[str, Any], module: str, rank: int) -> float:
    """The factor peft multiplies B·A by for `module` (LoraLayer.update_layer)."""
    alpha = float(config.get("lora_alpha") or 8)
    for pattern, value in (config.get("alpha_pattern") or {}).items():
        if re.match(rf"(.*\.)?({pattern})$", module):  # peft.utils.other.get_pattern_key's rule
            alpha = float(value)
            break
    return alpha / math.sqrt(rank) if config.get("use_rslora") else alpha / rank


def _permute_rows(weights: np.ndarray, n_head: int) -> np.ndarray:
    """LlamaModel.permute: reorder each head's rows from HF's rotate-half layout to llama.cpp's interleaved one."""
    rows = weights.shape[0]
    return (weights.reshape(n_head, 2, rows // n_head // 2, *weights.shape[1:])
            .swapaxes(1, 2)
            .reshape(weights.shape))


def _write(out_path: Path, arch: str, alpha: float, tensors: list[tuple[str, np.ndarray]]) -> None:
    from gguf import GGUFType, GGUFWriter, Keys

    out_path.parent.mkdir(parents=True, exist_ok=True)
    # Beside the target and renamed into place, so a reader never sees a half-written adapter.
    fd, tmp_name = tempfile.mkstemp(dir=out_path.parent, prefix=".lora-", suffix=".gguf")
    os.close(fd)
    try:
        writer = GGUFWriter(tmp_name, arch)
        writer.add_type(GGUFType.ADAPTER)
        writer.add_string(Keys.Adapter.TYPE, "lora")
        writer.add_float32(Keys.Adapter.LORA_ALPHA, alpha)
        for name, tensor in tensors:
            writer.add_tensor(name, np.ascontiguousarray(tensor, dtype=np.float32))
        writer.write_header_to_file()
        writer.write_kv_data_to_file()
        writer.write_tensors_to_file()
        writer.close()
        os.replace(tmp_name, out_path)
    finally:
        if os.path.exists(tmp_name):
            os.unlink(tmp_name)

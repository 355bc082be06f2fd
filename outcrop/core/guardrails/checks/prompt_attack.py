"""PROMPT_ATTACK: the NanoGuard jailbreak / prompt-injection classifier, run with our own inference code.

The architecture re-implements `nanoguard/model.py` from metatronnanoguard 0.1.0 (MIT, Ognjen Vucurevic): a
4-layer bidirectional transformer (RoPE, QK-norm, ReLU² MLP, per-layer x0 mixing), mean pooling over real
tokens and a 2-way head, 16.8M parameters, 512 tokens. The pack's code is never imported (DESIGN.md §3); its
weights load with `torch.load(weights_only=True)` and its pickled tiktoken tokenizer through an unpickler that
admits one class and rebuilds the `tiktoken.Encoding` from plain data.

Every window is padded to 512 tokens, as the original does: its attention has no padding mask, so padding
changes the scores, and scoring windows unpadded changed 4% of the decisions on the benchmark corpora
(bench/guardrail_content.py --padding-check). So a short prompt costs as much as a 512-token one.
"""

from __future__ import annotations

import pickle
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any, ClassVar

from outcrop import modelpacks
from outcrop.core.guardrails.checks.base import Calibration, ContentCheck
from outcrop.engines.base import require
from outcrop.engines.openmp import on_own_thread
from outcrop.errors import ModelNotReady

SEQ_LEN = 512
STRIDE = 384  # long texts: 511-token windows overlapping by 127 tokens, the text scores its worst window
BATCH = 8
BOS, PAD = "<|reserved_0|>", "<|reserved_1|>"


class _PickledEncoding:
    """Stands in for tiktoken.core.Encoding while unpickling: it only keeps the state it is given."""

    state: object = None

    def __setstate__(self, state: object) -> None:
        self.state = state


class RestrictedUnpickler(pickle.Unpickler):
    """Unpickles a tiktoken Encoding as data: the one global allowed maps to an inert stand-in."""

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) == ("tiktoken.core", "Encoding"):
            return _PickledEncoding
        raise pickle.UnpicklingError(f"refusing to load {module}.{name} from a tokenizer file")


def load_encoding(path: Path) -> Any:
    """The tiktoken.Encoding pickled in `path`, rebuilt from its name, pattern, ranks and special tokens."""
    tiktoken = require("tiktoken", "guardrails")
    with path.open("rb") as f:
        obj = RestrictedUnpickler(f).load()
    state = obj.state if isinstance(obj, _PickledEncoding) else None
    if not (
        isinstance(state, dict)
        and isinstance(state.get("name"), str)
        and isinstance(state.get("pat_str"), str)
        and isinstance(state.get("mergeable_ranks"), dict)
        and all(isinstance(k, bytes) and isinstance(v, int) for k, v in state["mergeable_ranks"].items())
        and isinstance(state.get("special_tokens"), dict)
        and all(isinstance(k, str) and isinstance(v, int) for k, v in state["special_tokens"].items())
    ):
        raise ModelNotReady(f"{path} is not a tiktoken encoding")
    return tiktoken.Encoding(
        state["name"],
        pat_str=state["pat_str"],
        mergeable_ranks=state["mergeable_ranks"],
        special_tokens=state["special_tokens"],
    )


class _Model:
    """NanoGuard's forward pass over a dict of weight tensors (no nn.Module: nothing to import at class time)."""

    def __init__(self, checkpoint: dict[str, Any], torch: Any) -> None:
        self.torch = torch
        config = checkpoint["config"]
        self.n_layer, self.n_head = int(config["n_layer"]), int(config["n_head"])
        if int(config["sequence_len"]) != SEQ_LEN or int(config["n_kv_head"]) != self.n_head:
            raise ModelNotReady(f"unexpected NanoGuard config {config}")
        self.w = {k: v.float().contiguous() for k, v in checkpoint["model_state_dict"].items()}
        head_dim = int(config["n_embd"]) // self.n_head
        inv_freq = 1.0 / (10000 ** (torch.arange(0, head_dim, 2, dtype=torch.float32) / head_dim))
        freqs = torch.outer(torch.arange(SEQ_LEN, dtype=torch.float32), inv_freq)
        # The original keeps cos/sin in bfloat16 (they multiply float32 activations): keep that rounding.
        self.cos = freqs.cos().bfloat16().float()[None, :, None, :]
        self.sin = freqs.sin().bfloat16().float()[None, :, None, :]

    def _rms(self, x: Any) -> Any:
        return self.torch.nn.functional.rms_norm(x, (x.size(-1),))

    def _rotate(self, x: Any, t: int) -> Any:
        d = x.shape[3] // 2
        cos, sin = self.cos[:, :t], self.sin[:, :t]
        x1, x2 = x[..., :d], x[..., d:]
        return self.torch.cat([x1 * cos + x2 * sin, x1 * (-sin) + x2 * cos], 3)

    def _attention(self, x: Any, p: str) -> Any:
        fn, w = self.torch.nn.functional, self.w
        b, t, c = x.shape
        q, k, v = (fn.linear(x, w[f"{p}attn.c_{n}.weight"]).view(b, t, self.n_head, -1) for n in "qkv")
        q, k = self._rms(self._rotate(q, t)), self._rms(self._rotate(k, t))
        # No padding mask, as in the original: padding tokens are attended to, so inputs are padded the same way.
        y = fn.scaled_dot_product_attention(q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2))
        return fn.linear(y.transpose(1, 2).reshape(b, t, c), w[f"{p}attn.c_proj.weight"])

    def __call__(self, ids: Any, mask: Any) -> Any:
        fn, w = self.torch.nn.functional, self.w
        x = x0 = self._rms(fn.embedding(ids, w["transformer.wte.weight"]))
        for i in range(self.n_layer):
            p = f"transformer.h.{i}."
            x = w["resid_lambdas"][i] * x + w["x0_lambdas"][i] * x0
            x = x + self._attention(self._rms(x), p)
            h = fn.relu(fn.linear(self._rms(x), w[f"{p}mlp.c_fc.weight"])).square()
            x = x + fn.linear(h, w[f"{p}mlp.c_proj.weight"])
        x = self._rms(x)
        m = mask.unsqueeze(-1).float()
        pooled = (x * m).sum(dim=1) / m.sum(dim=1).clamp(min=1)
        pooled = fn.layer_norm(pooled, (pooled.size(-1),), w["cls_norm.weight"], w["cls_norm.bias"])
        logits = fn.linear(pooled, w["cls_head.weight"], w["cls_head.bias"])
        return fn.softmax(logits, dim=-1)[:, 1]


class NanoGuard(ContentCheck):
    """Jailbreak and prompt-injection detector; confidence is the model's injection probability."""

    name = "nanoguard"
    categories = ("PROMPT_ATTACK",)
    # Chosen on 1,708 attack and 1,493 benign prompts from packaged corpora (bench/guardrail_content.py):
    # strength HIGH blocks from 0.5 (the model's own threshold): recall 0.93 at 8.7% false positives;
    # MEDIUM from 0.9: recall 0.91 at 4.8%; LOW from 0.999: recall 0.85 at 0.9%.
    calibration: ClassVar[dict[str, Calibration]] = {"PROMPT_ATTACK": Calibration(low=0.5, medium=0.9, high=0.999)}

    def __init__(self, settings: Any) -> None:
        super().__init__(settings)
        self._lock = threading.Lock()
        self._model: _Model | None = None
        self._encoding: Any = None

    def warm(self) -> None:
        """Load the weights and tokenizer now rather than on the first request."""
        self._load()

    def score(self, texts: Sequence[str]) -> list[dict[str, float]]:
        return [{"PROMPT_ATTACK": p} for p in self.probabilities(texts)]

    def probabilities(self, texts: Sequence[str]) -> list[float]:
        """Injection probability per text: the highest over its 512-token windows."""
        model, encoding = self._load()
        bos, pad = encoding.encode_single_token(BOS), encoding.encode_single_token(PAD)
        windows: list[list[int]] = []
        owner: list[int] = []
        for i, tokens in enumerate(encoding.encode_ordinary_batch(list(texts))):
            for w in _windows(tokens):
                windows.append([bos, *w])
                owner.append(i)
        best = [0.0] * len(texts)
        # One forward pass at a time: torch already spreads one over the cores, two would only contend. On a
        # thread of its own, so the OpenMP team it makes ends with it (engines.openmp).
        with self._lock:
            on_own_thread(lambda: self._score(model, windows, owner, best, pad))
        return best

    @staticmethod
    def _score(model: _Model, windows: list[list[int]], owner: list[int], best: list[float], pad: int) -> None:
        torch = model.torch
        with torch.inference_mode():
            for start in range(0, len(windows), BATCH):
                chunk = windows[start : start + BATCH]
                ids = torch.full((len(chunk), SEQ_LEN), pad, dtype=torch.long)
                mask = torch.zeros((len(chunk), SEQ_LEN), dtype=torch.bool)
                for row, w in enumerate(chunk):
                    ids[row, : len(w)] = torch.tensor(w, dtype=torch.long)
                    mask[row, : len(w)] = True
                for row, p in enumerate(model(ids, mask).tolist()):
                    i = owner[start + row]
                    best[i] = max(best[i], float(p))

    def _load(self) -> tuple[_Model, Any]:
        with self._lock:
            if self._model is None:
                torch = require("torch", "guardrails")
                cache = self.settings.model_cache
                weights = modelpacks.pack_path(modelpacks.NANOGUARD, cache)
                self._encoding = load_encoding(modelpacks.pack_path(modelpacks.NANOGUARD_TOKENIZER, cache))
                self._model = _Model(torch.load(weights, map_location="cpu", weights_only=True), torch)
            return self._model, self._encoding


def _windows(tokens: list[int]) -> list[list[int]]:
    size = SEQ_LEN - 1  # room for BOS
    if len(tokens) <= size:
        return [tokens]
    starts = list(range(0, len(tokens) - size, STRIDE)) + [len(tokens) - size]
    return [tokens[s : s + size] for s in starts]

"""Chat models on transformers (+ peft): Hugging Face folders of safetensors, and LoRA adapters that could not be
converted for llama.cpp. Slower than llama.cpp on CPU; used only where llama.cpp cannot serve the weights.

`spec.path` is a model folder, or a tar of one (an imported model's sealed weights, opened in memory);
`spec.options["adapter_path"]` is an optional peft adapter folder or tar. Tars are unpacked into a private
directory in RAM (/dev/shm) where there is one, removed when the engine closes.
"""

from __future__ import annotations

import os
import shutil
import tarfile
import tempfile
import threading
from pathlib import Path
from typing import Any

from outcrop.engines.base import Emit, Engine, EngineDone, EngineText, require
from outcrop.engines.openai_format import render_messages
from outcrop.engines.openmp import on_own_thread
from outcrop.errors import ModelNotReady
from outcrop.types import ChatRequest


class TransformersEngine(Engine):
    name = "transformers"
    can_chat = True

    def load(self) -> None:
        require("transformers", "train")
        torch = require("torch", "train")
        from transformers import AutoModelForCausalLM, AutoTokenizer

        if not self.context.model_path:
            raise ModelNotReady(f"model {self.spec.model_id} has no weights path")
        self._scratch: list[str] = []

        def build() -> Any:  # on a thread of its own, as generation is (engines.openmp)
            folder = self._folder(str(self.context.model_path))
            self.tokenizer = AutoTokenizer.from_pretrained(folder)
            model: Any = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32)
            adapter = self.spec.options.get("adapter_path")
            if adapter:
                from peft import PeftModel

                model = PeftModel.from_pretrained(model, self._folder(str(adapter)))
            return model

        try:
            model = on_own_thread(build)
        except ModelNotReady:
            raise
        except Exception as exc:
            self.close()
            raise ModelNotReady(f"model {self.spec.model_id} failed to load with transformers: {exc}") from exc
        self.model = model.eval()
        self._torch = torch
        self._lock = threading.Lock()  # one generation at a time: each already uses every core

    def close(self) -> None:
        for path in getattr(self, "_scratch", []):
            shutil.rmtree(path, ignore_errors=True)
        self._scratch = []

    def generate(self, request: ChatRequest, emit: Emit) -> None:
        from transformers import StoppingCriteria, StoppingCriteriaList, TextIteratorStreamer

        ids = self._prompt_ids(request)
        cfg = request.config
        limit = cfg.max_tokens if cfg.max_tokens and cfg.max_tokens > 0 else 512
        sample = cfg.temperature is not None and cfg.temperature > 0
        kwargs: dict[str, Any] = {"max_new_tokens": limit, "do_sample": sample,
                                  "pad_token_id": self.tokenizer.pad_token_id or self.tokenizer.eos_token_id}
        if sample:
            kwargs.update(temperature=cfg.temperature, top_p=cfg.top_p or 1.0, top_k=cfg.top_k or 0)
        if cfg.seed is not None:
            self._torch.manual_seed(cfg.seed)
        stop = threading.Event()

        class Cancelled(StoppingCriteria):
            def __call__(self, input_ids: Any, scores: Any, **_: Any) -> bool:
                return stop.is_set()

        streamer = TextIteratorStreamer(self.tokenizer, skip_prompt=True, skip_special_tokens=True)
        produced: list[Any] = []

        def run() -> None:
            with self._lock, self._torch.inference_mode():
                out = self.model.generate(input_ids=ids, attention_mask=self._torch.ones_like(ids), streamer=streamer,
                                          stopping_criteria=StoppingCriteriaList([Cancelled()]), **kwargs)
                produced.append(out)

        worker = threading.Thread(target=run, daemon=True)
        worker.start()
        for piece in streamer:
            if piece and emit(EngineText(piece)):
                stop.set()
        worker.join()
        new_tokens = int(produced[0].shape[1] - ids.shape[1]) if produced else 0
        finish = "length" if new_tokens >= limit else "stop"
        emit(EngineDone(finish, int(ids.shape[1]), new_tokens))

    def count_tokens(self, request: ChatRequest) -> int:
        return int(self._prompt_ids(request).shape[1])

    def _prompt_ids(self, request: ChatRequest) -> Any:
        if request.prompt is not None:
            return self.tokenizer(request.prompt, return_tensors="pt")["input_ids"]
        messages = [{"role": m["role"], "content": m["content"] if isinstance(m["content"], str) else
                     "".join(p.get("text", "") for p in m["content"])} for m in render_messages(request)]
        encoded: Any = self.tokenizer.apply_chat_template(messages, add_generation_prompt=True, return_tensors="pt",
                                                          return_dict=True)
        return encoded["input_ids"]

    def _folder(self, path: str) -> str:
        """A folder as is; a tar (by content, since an in-memory file has no telling name) unpacked privately."""
        if Path(path).is_dir():
            return path
        if not tarfile.is_tarfile(path):
            raise ModelNotReady(f"{path} is neither a model folder nor a tar of one")
        base = "/dev/shm" if os.path.isdir("/dev/shm") and os.access("/dev/shm", os.W_OK) else None
        target = tempfile.mkdtemp(prefix="outcrop-model-", dir=base)  # 0700
        self._scratch.append(target)
        with tarfile.open(path) as tar:
            tar.extractall(target, filter="data")  # refuses absolute paths, links out of the folder, devices
        return target

"""LoRA fine-tuning of a GGUF base model with transformers + peft: the training loop behind CreateModelCustomizationJob.

Deterministic (fixed seeds, fixed shuffle), CPU by default and CUDA when present. Metrics follow Bedrock's output
files: training_artifacts/step_wise_training_metrics.csv and
validation_artifacts/post_fine_tuning_validation/validation_metrics.csv, steps and epochs counted from 0.
"""

from __future__ import annotations

import contextlib
import csv
import dataclasses
import io
import math
import random
import resource
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from outcrop.core.customization.datasets import Example, HyperParameters, Message, check_token_lengths
from outcrop.core.customization.hf_base import load_base
from outcrop.errors import Invalid, ModelError

if TYPE_CHECKING:
    import torch

SEED = 0
MAX_TOKENS = 4096  # Bedrock's per-record limit (input plus output) at batch size 1
TRAINING_METRICS_PATH = "training_artifacts/step_wise_training_metrics.csv"
VALIDATION_METRICS_PATH = "validation_artifacts/post_fine_tuning_validation/validation_metrics.csv"
_IGNORE = -100  # the label transformers' loss skips


class TrainingStopped(Exception):
    """should_stop() answered True; no adapter was written."""

    def __init__(self, steps: int) -> None:
        super().__init__(f"training stopped after {steps} steps")
        self.steps = steps


@dataclass(frozen=True)
class StepMetrics:
    step: int  # from 0, as Bedrock's step_number
    epoch: int  # from 0
    training_loss: float  # mean over the step's target tokens
    perplexity: float
    learning_rate: float
    tokens: int  # target tokens in the step
    validation_loss: float | None = None  # set on the last step of each epoch when validation data is given
    validation_perplexity: float | None = None


@dataclass(frozen=True)
class Checkpoints:
    """Where a run keeps its progress, so a run cut short (its server killed) resumes instead of starting over.

    `load()` gives the last saved checkpoint or None; `save(data)` replaces it. A checkpoint is written after a
    step once `every_s` seconds have passed since the last one (0: after every step but the last); it holds the
    adapter, the optimizer's and scheduler's state, torch's RNG (dropout) and the steps so far.
    """

    load: Callable[[], bytes | None]
    save: Callable[[bytes], None]
    every_s: float = 60.0


@dataclass(frozen=True)
class TrainResult:
    adapter_dir: Path  # peft's adapter_config.json + adapter_model.safetensors
    steps: int
    training_loss: float
    validation_loss: float | None
    seconds: float
    peak_rss_bytes: int  # of this whole process, base-model conversion included when it happened here
    metrics: tuple[StepMetrics, ...] = ()


@dataclass(frozen=True)
class Encoded:
    input_ids: list[int]
    labels: list[int]  # _IGNORE outside the tokens the loss covers


def train(base_gguf: str | Path, cache_dir: Path, train: list[Example], validation: list[Example] | None,
          hp: HyperParameters, out_dir: Path, on_step: Callable[[StepMetrics], None],
          should_stop: Callable[[], bool], threads: int | None = None,
          checkpoints: Checkpoints | None = None) -> TrainResult:
    """Train a LoRA adapter on `train` and save it to `out_dir`; raises TrainingStopped when should_stop() says so,
    Invalid when a record is longer than the model allows. With `checkpoints`, a run resumes from the last one
    (on_step is called again for the steps it holds)."""
    import torch
    from peft import LoraConfig, get_peft_model

    if not train:
        raise Invalid("the training data has no records")
    started = time.perf_counter()
    with _torch_threads(threads):
        base, tokenizer = load_base(base_gguf, cache_dir)
        limit = min(MAX_TOKENS, int(getattr(base.config, "max_position_embeddings", MAX_TOKENS)))
        train_set = _encode_all(train, tokenizer, limit, "training data")
        valid_set = _encode_all(validation, tokenizer, limit, "validation data") if validation else None
        base.config.use_cache = False
        torch.manual_seed(SEED)  # LoRA's A init and dropout
        config = LoraConfig(r=hp.lora_rank, lora_alpha=hp.lora_alpha, lora_dropout=hp.lora_dropout,
                            target_modules=_targets(base, hp.lora_targets), bias="none", task_type="CAUSAL_LM")
        model = get_peft_model(base, config)
        if torch.cuda.is_available():
            model.to("cuda")
        pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
        history = _run(model, train_set, valid_set, hp, int(pad_id), on_step, should_stop, checkpoints)
        out_dir.mkdir(parents=True, exist_ok=True)
        model.save_pretrained(str(out_dir))
    last = history[-1]
    final_validation = next((m.validation_loss for m in reversed(history) if m.validation_loss is not None), None)
    return TrainResult(out_dir, len(history), last.training_loss, final_validation, time.perf_counter() - started,
                       peak_rss_bytes(), tuple(history))


def encode(example: Example, tokenizer: Any) -> Encoded:
    """Token ids and labels: for a conversation, rendered with the model's chat template and labelled only on the
    assistant replies through their end-of-turn token; for continued pre-training, the text plus EOS, all labelled."""
    if example.text is not None:
        ids = list(tokenizer(example.text, add_special_tokens=False)["input_ids"]) + [tokenizer.eos_token_id]
        return Encoded(ids, list(ids))
    messages = example.messages
    full = _render(tokenizer, messages)
    spans = [_reply_span(tokenizer, messages, i, full) for i, m in enumerate(messages) if m.role == "assistant"]
    # The template adds every special token itself; letting the tokenizer add a BOS too would double it.
    enc = tokenizer(full, add_special_tokens=False, return_offsets_mapping=True)
    labels = [tok if any(a < end and b > start for start, end in spans) else _IGNORE
              for tok, (a, b) in zip(enc["input_ids"], enc["offset_mapping"], strict=True)]
    return Encoded(list(enc["input_ids"]), labels)


def _render(tokenizer: Any, messages: Sequence[Message], generation_prompt: bool = False) -> str:
    chat = [{"role": m.role, "content": m.content} for m in messages]
    return str(tokenizer.apply_chat_template(chat, tokenize=False, add_generation_prompt=generation_prompt))


def _reply_span(tokenizer: Any, messages: Sequence[Message], i: int, full: str) -> tuple[int, int]:
    """Character span of assistant turn i in `full`: after the generation prompt, through the end-of-turn token."""
    prompt, through = _render(tokenizer, messages[:i], True), _render(tokenizer, messages[: i + 1])
    if not (full.startswith(through) and through.startswith(prompt)):
        raise ModelError("this model's chat template does not render a conversation turn by turn; "
                         "fine-tuning on conversations needs one that does")
    eot = through.rfind(tokenizer.eos_token, len(prompt)) if tokenizer.eos_token else -1
    return len(prompt), (eot + len(tokenizer.eos_token) if eot >= 0 else len(through))


def _encode_all(examples: list[Example], tokenizer: Any, limit: int, source: str) -> list[Encoded]:
    encoded = [encode(e, tokenizer) for e in examples]
    check_token_lengths(((e.line, len(x.input_ids)) for e, x in zip(examples, encoded, strict=True)), limit, source)
    return encoded


def _targets(model: Any, wanted: tuple[str, ...]) -> list[str]:
    import torch

    present = {name.rsplit(".", 1)[-1] for name, m in model.named_modules() if isinstance(m, torch.nn.Linear)}
    targets = [t for t in wanted if t in present]
    if not targets:
        raise ModelError(f"the base model has none of the LoRA target layers {', '.join(wanted)}")
    return targets


def _run(model: Any, train_set: list[Encoded], valid_set: list[Encoded] | None, hp: HyperParameters, pad_id: int,
         on_step: Callable[[StepMetrics], None], should_stop: Callable[[], bool],
         checkpoints: Checkpoints | None = None) -> list[StepMetrics]:
    import torch

    per_epoch = math.ceil(len(train_set) / hp.batch_size)
    total = min(per_epoch * hp.epoch_count, hp.max_steps or per_epoch * hp.epoch_count)
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=hp.learning_rate, weight_decay=0.0)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, _linear_schedule(hp.warmup_steps, total))
    rng = random.Random(SEED)  # the batch order: replayed from the seed on a resume
    history = _resume(checkpoints, model, optimizer, scheduler)
    for metrics in history:
        on_step(metrics)
    saved = time.monotonic()
    model.train()
    for epoch in range(hp.epoch_count):
        batches = _batches(train_set, hp.batch_size, rng)
        done = len(history) - epoch * per_epoch  # of this epoch's batches, in an earlier run
        if done >= len(batches):
            continue
        for i, batch in enumerate(batches[: total - len(history) + max(done, 0)]):
            if i < done:
                continue
            if should_stop():
                raise TrainingStopped(len(history))
            rate = float(scheduler.get_last_lr()[0])
            loss, tokens = _train_step(model, optimizer, params, _collate(batch, pad_id, _device(model)))
            scheduler.step()
            end = i == len(batches) - 1 or len(history) == total - 1
            valid = _evaluate(model, valid_set, hp.batch_size, pad_id) if valid_set and end else None
            metrics = StepMetrics(len(history), epoch, loss, _perplexity(loss), rate, tokens, valid,
                                  None if valid is None else _perplexity(valid))
            history.append(metrics)
            on_step(metrics)
            if checkpoints is not None and len(history) < total and time.monotonic() - saved >= checkpoints.every_s:
                checkpoints.save(_checkpoint(model, optimizer, scheduler, history))
                saved = time.monotonic()
        if len(history) >= total:
            break
    return history


def _checkpoint(model: Any, optimizer: Any, scheduler: Any, history: list[StepMetrics]) -> bytes:
    import torch
    from peft import get_peft_model_state_dict

    state = {"adapter": get_peft_model_state_dict(model), "optimizer": optimizer.state_dict(),
             "scheduler": scheduler.state_dict(), "torch_rng": torch.get_rng_state(),
             "history": [list(dataclasses.astuple(m)) for m in history]}
    buffer = io.BytesIO()
    torch.save(state, buffer)
    return buffer.getvalue()


def _resume(checkpoints: Checkpoints | None, model: Any, optimizer: Any, scheduler: Any) -> list[StepMetrics]:
    """The steps an earlier run of this job made, its state put back; [] when there is no checkpoint."""
    import torch
    from peft import set_peft_model_state_dict

    data = checkpoints.load() if checkpoints is not None else None
    if not data:
        return []
    state = torch.load(io.BytesIO(data), map_location=_device(model), weights_only=True)
    set_peft_model_state_dict(model, state["adapter"])
    optimizer.load_state_dict(state["optimizer"])
    scheduler.load_state_dict(state["scheduler"])
    torch.set_rng_state(state["torch_rng"].cpu())
    return [StepMetrics(*row) for row in state["history"]]


def _train_step(model: Any, optimizer: Any, params: list[Any], batch: dict[str, torch.Tensor]) -> tuple[float, int]:
    import torch

    loss = model(**batch).loss  # transformers' causal LM loss: mean over the shifted labels that are not ignored
    loss.backward()
    torch.nn.utils.clip_grad_norm_(params, 1.0)
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    return float(loss.item()), _target_tokens(batch)


def _evaluate(model: Any, examples: list[Encoded], batch_size: int, pad_id: int) -> float:
    """Mean loss per target token over all of `examples` (not a mean of batch means)."""
    import torch

    model.eval()
    total, count = 0.0, 0
    with torch.no_grad():
        for batch in _batches(examples, batch_size, None):
            tensors = _collate(batch, pad_id, _device(model))
            n = _target_tokens(tensors)
            total += float(model(**tensors).loss.item()) * n
            count += n
    model.train()
    return total / max(count, 1)


def _batches(items: list[Encoded], size: int, rng: random.Random | None) -> list[list[Encoded]]:
    order = list(range(len(items)))
    if rng is not None:
        rng.shuffle(order)
    return [[items[i] for i in order[k: k + size]] for k in range(0, len(order), size)]


def _collate(batch: list[Encoded], pad_id: int, device: Any) -> dict[str, torch.Tensor]:
    """Right-padded to the longest record in the batch (dynamic padding)."""
    import torch

    width = max(len(e.input_ids) for e in batch)

    def pad(rows: list[list[int]], value: int) -> torch.Tensor:
        return torch.tensor([r + [value] * (width - len(r)) for r in rows], dtype=torch.long, device=device)

    return {"input_ids": pad([e.input_ids for e in batch], pad_id),
            "attention_mask": pad([[1] * len(e.input_ids) for e in batch], 0),
            "labels": pad([e.labels for e in batch], _IGNORE)}


def _target_tokens(batch: dict[str, torch.Tensor]) -> int:
    return int((batch["labels"][:, 1:] != _IGNORE).sum().item())  # the loss predicts token t+1 from 0..t


def _device(model: Any) -> Any:
    return next(model.parameters()).device


def _linear_schedule(warmup: int, total: int) -> Callable[[int], float]:
    """Linear warmup from 0, then linear decay to 0 at `total` (transformers' get_linear_schedule_with_warmup)."""
    def factor(step: int) -> float:
        if step < warmup:
            return step / warmup
        return max(0.0, (total - step) / max(1, total - warmup))
    return factor


def _perplexity(loss: float) -> float:
    return math.exp(loss) if loss < 700 else math.inf


def peak_rss_bytes() -> int:
    """This process's peak resident set size so far (ru_maxrss is KiB on Linux, bytes on macOS)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return int(peak if sys.platform == "darwin" else peak * 1024)


@contextlib.contextmanager
def _torch_threads(threads: int | None) -> Iterator[None]:
    """torch's thread count is process-wide: set it for the run only, and put the old value back."""
    import torch

    if threads is None:
        yield
        return
    old = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(old)


# --- Bedrock's metrics files -------------------------------------------------------------------------------------


def training_metrics_csv(metrics: Sequence[StepMetrics]) -> str:
    """step_wise_training_metrics.csv: one row per step."""
    return _csv(("step_number", "epoch_number", "training_loss", "perplexity"),
                [(m.step, m.epoch, m.training_loss, m.perplexity) for m in metrics])


def validation_metrics_csv(metrics: Sequence[StepMetrics]) -> str:
    """validation_metrics.csv: one row per validation pass (the end of each epoch)."""
    return _csv(("step_number", "epoch_number", "validation_loss", "perplexity"),
                [(m.step, m.epoch, m.validation_loss, m.validation_perplexity) for m in metrics
                 if m.validation_loss is not None])


def write_metrics_csv(out_root: Path, metrics: Sequence[StepMetrics]) -> list[Path]:
    """Both files under `out_root` in Bedrock's layout; the validation file only when validation ran."""
    files = {TRAINING_METRICS_PATH: training_metrics_csv(metrics)}
    if any(m.validation_loss is not None for m in metrics):
        files[VALIDATION_METRICS_PATH] = validation_metrics_csv(metrics)
    written = []
    for relative, text in files.items():
        path = out_root / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        written.append(path)
    return written


def _csv(header: tuple[str, ...], rows: list[tuple[Any, ...]]) -> str:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(header)
    writer.writerows(rows)
    return out.getvalue()

"""LoRA fine-tuning speed and memory on the packaged models (SmolLM2-135M, the tiny one; Qwen2.5-0.5B, the default).

Per model, each in its own child process so one's memory never counts against another's (ru_maxrss from wait4):
  convert  load_base() into an empty cache: GGUF dequantized, tokenizer converted, folder saved, reloaded
  load     load_base() again from the now warm cache, twice (a fresh process's first load imports the model code)
  train    training.train() for --steps steps at batchSize 4 on ISO 3166 alpha-3 questions (~64 tokens a record)
steps/s leaves out the first step (warm-up) and the time before it (loading, tokenizing, wrapping in LoRA).

Run: python bench/finetune.py [--steps 20] [--threads N] [--models smollm2-135m-instruct,qwen2.5-coder-0.5b-instruct]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import SEED_MODELS, CpuWatch, emit, machine_notes  # noqa: E402

from outcrop import modelpacks  # noqa: E402

MODELS = {p.name: p for p in (modelpacks.SMOLLM2_135M, modelpacks.QWEN_05B)}
BATCH = 4
# A system turn in place of each model's default one, so records come to ~64 tokens with either tokenizer.
SYSTEM = "You are a geography assistant for a shipping firm. Reply with country codes in capitals, nothing more."


def examples() -> tuple[list, list]:  # type: ignore[type-arg]
    """Every fifth country (by code) held out for validation, as tests/unit/test_training.py splits them."""
    import pycountry

    from outcrop.core.customization.datasets import Example, Message

    ordered = sorted(pycountry.countries, key=lambda c: c.alpha_3)
    records = [Example(i + 1, (Message("system", SYSTEM),
                               Message("user", f"What is the ISO 3166-1 alpha-3 code of {c.name}? Answer with the "
                                               "code only."),
                               Message("assistant", c.alpha_3))) for i, c in enumerate(ordered)]
    return [e for i, e in enumerate(records) if i % 5], [e for i, e in enumerate(records) if i % 5 == 0]


def child_load(gguf: Path, cache: Path, threads: int, again: bool) -> dict[str, object]:
    t0 = time.perf_counter()
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer  # noqa: F401  (outside the clock: import cost)

    from outcrop.core.customization.hf_base import load_base

    torch.set_num_threads(threads)
    t1 = time.perf_counter()
    model, _ = load_base(gguf, cache)
    t2 = time.perf_counter()
    if again:
        del model
        model, _ = load_base(gguf, cache)  # again in the same process: what a worker that has trained before pays
    return {"import_s": round(t1 - t0, 2), "load_s": round(t2 - t1, 2), "reload_s": round(time.perf_counter() - t2, 2),
            "params": sum(p.numel() for p in model.parameters())}


def child_train(gguf: Path, cache: Path, threads: int, steps: int) -> dict[str, object]:
    from transformers import AutoTokenizer

    from outcrop.core.customization.datasets import HyperParameters
    from outcrop.core.customization.hf_base import converted_base_dir
    from outcrop.core.customization.training import StepMetrics, encode, train

    training, held_out = examples()
    tokenizer = AutoTokenizer.from_pretrained(converted_base_dir(gguf, cache), local_files_only=True)
    tokens = statistics.mean(len(encode(e, tokenizer).input_ids) for e in training)
    stamps: list[float] = []
    seen: list[StepMetrics] = []

    def on_step(m: StepMetrics) -> None:
        stamps.append(time.perf_counter())
        seen.append(m)

    hp = HyperParameters(epoch_count=1, batch_size=BATCH, learning_rate=1e-3, max_steps=steps)
    with tempfile.TemporaryDirectory() as out:
        t0 = time.perf_counter()
        result = train(gguf, cache, training, held_out[:BATCH * 4], hp, Path(out) / "adapter", on_step,
                       lambda: False, threads=threads)
        adapter_bytes = (Path(out) / "adapter" / "adapter_model.safetensors").stat().st_size
    # The last step also ran the validation pass; leave it out of the per-step time.
    steady = (stamps[-2] - stamps[0]) / (len(stamps) - 2) if len(stamps) > 2 else float("nan")
    return {"steps": result.steps, "mean_record_tokens": round(tokens, 1), "setup_and_first_step_s": round(stamps[0] - t0, 2),
            "s_per_step": round(steady, 3), "steps_per_s": round(1 / steady, 3),
            "validation_s": round(stamps[-1] - stamps[-2] - steady, 2), "total_s": round(result.seconds, 1),
            "loss_first": round(seen[0].training_loss, 3), "loss_last3": round(statistics.mean(m.training_loss for m in seen[-3:]), 3),
            "validation_loss": round(result.validation_loss or 0.0, 3), "adapter_mib": round(adapter_bytes / 2**20, 1)}


def run_child(args: list[str]) -> dict[str, object]:
    """One child; its own peak RSS from wait4, never mixed with its siblings'."""
    proc = subprocess.Popen([sys.executable, __file__, *args], stdout=subprocess.PIPE,
                            env={**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"})
    assert proc.stdout is not None
    out = proc.stdout.read().decode()
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        raise RuntimeError(f"child {args} exited with {proc.returncode}")
    result = json.loads(out.strip().splitlines()[-1])
    result["peak_rss_mib"] = round(usage.ru_maxrss / 1024)  # KiB on Linux
    return dict(result)


def measure(name: str, threads: int, steps: int) -> dict[str, object]:
    gguf = SEED_MODELS / MODELS[name].filename
    cache = Path(tempfile.mkdtemp(prefix="outcrop-bench-hf-"))
    try:
        common = ["--gguf", str(gguf), "--cache", str(cache), "--threads", str(threads)]
        convert = run_child(["--child", "convert", *common])
        load = run_child(["--child", "load", *common])
        trained = run_child(["--child", "train", *common, "--steps", str(steps)])
    finally:
        shutil.rmtree(cache, ignore_errors=True)
    return {"model": name, "params": convert["params"], "uncached_load_s": convert["load_s"],
            "convert_peak_rss_mib": convert["peak_rss_mib"], "cached_load_s": load["load_s"],
            "cached_reload_in_process_s": load["reload_s"], "import_s": load["import_s"],
            "load_peak_rss_mib": load["peak_rss_mib"], "train": trained}


def table(results: list[dict[str, object]]) -> str:
    lines = ["| model | load uncached s | load cached s (fresh / warm process) | steps/s | s/step | setup+1st step s | train peak RSS MiB | "
             "convert peak RSS MiB | loss first → last3 |", "|---|---|---|---|---|---|---|---|---|"]
    for r in results:
        t = r["train"]
        assert isinstance(t, dict)
        lines.append(f"| {r['model']} | {r['uncached_load_s']} | {r['cached_load_s']} / {r['cached_reload_in_process_s']} | {t['steps_per_s']} | "
                     f"{t['s_per_step']} | {t['setup_and_first_step_s']} | {t['peak_rss_mib']:,} | "
                     f"{r['convert_peak_rss_mib']:,} | {t['loss_first']} → {t['loss_last3']} |")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--models", default=",".join(MODELS))
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    ap.add_argument("--child", choices=("convert", "load", "train"))
    ap.add_argument("--gguf", type=Path)
    ap.add_argument("--cache", type=Path)
    args = ap.parse_args()
    if args.child in ("convert", "load"):
        print(json.dumps(child_load(args.gguf, args.cache, args.threads, again=args.child == "load")), flush=True)
        return
    if args.child == "train":
        print(json.dumps(child_train(args.gguf, args.cache, args.threads, args.steps)), flush=True)
        return
    watch = CpuWatch().__enter__()
    results = [measure(name, args.threads, args.steps) for name in args.models.split(",")]
    print(table(results), flush=True)
    emit({"bench": "finetune", "machine": machine_notes(), "batch_size": BATCH, "steps": args.steps,
          "threads": args.threads, "results": results, "cpu_contention": watch.summary()}, "finetune")


if __name__ == "__main__":
    main()

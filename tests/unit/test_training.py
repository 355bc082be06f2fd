"""LoRA training on the real SmolLM2-135M: the loss falls on a small real task (ISO 3166 alpha-3 codes), the adapter
is written, should_stop stops it, and the converted base model is cached once."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from outcrop.core.customization.datasets import Example, HyperParameters, Message
from outcrop.core.customization.training import (
    Checkpoints,
    StepMetrics,
    TrainingStopped,
    train,
    training_metrics_csv,
    validation_metrics_csv,
    write_metrics_csv,
)
from outcrop.errors import Invalid, ModelNotReady
from outcrop.settings import Settings


def countries() -> tuple[list[Example], list[Example]]:
    """Every fifth country (by code) is held out for validation."""
    import pycountry

    ordered = sorted(pycountry.countries, key=lambda c: c.alpha_3)
    examples = [Example(i + 1, (Message("user", f"What is the ISO 3166-1 alpha-3 code of {c.name}? Answer with the "
                                                 "code only."), Message("assistant", c.alpha_3)))
                for i, c in enumerate(ordered)]
    return [e for i, e in enumerate(examples) if i % 5], [e for i, e in enumerate(examples) if i % 5 == 0]


@pytest.fixture(scope="module")
def smollm2() -> Path:
    pytest.importorskip("peft")
    pytest.importorskip("transformers")
    from outcrop import modelpacks

    home = os.environ.get("OUTCROP_TEST_MODEL_CACHE", str(Path.home() / ".outcrop"))  # as tests/e2e/conftest.py
    cache = Settings.model_validate({"home": home}).model_cache
    try:
        return modelpacks.pack_path(modelpacks.SMOLLM2_135M, cache)
    except ModelNotReady as e:
        pytest.skip(str(e))


@pytest.fixture(scope="module")
def hf_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("hf-base")


@pytest.mark.slow
def test_the_converted_base_is_cached_once(smollm2: Path, hf_cache: Path) -> None:
    from outcrop.core.customization.hf_base import SOURCE_FILE, converted_base_dir, load_base

    folder = converted_base_dir(smollm2, hf_cache)
    stamp = (folder / "model.safetensors").stat().st_mtime_ns
    assert converted_base_dir(str(smollm2), hf_cache) == folder
    assert (folder / "model.safetensors").stat().st_mtime_ns == stamp  # not converted again
    assert json.loads((folder / SOURCE_FILE).read_text())["sha256"] == (smollm2.parent / (smollm2.name + ".sha256")).read_text().strip()
    assert [p.name for p in hf_cache.iterdir() if not p.name.endswith(".lock")] == [folder.name]  # no temp folder left
    model, tokenizer = load_base(smollm2, hf_cache)
    assert model.config.model_type == "llama" and getattr(model, "hf_quantizer", None) is None
    assert str(tokenizer.apply_chat_template([{"role": "user", "content": "Hi"}], tokenize=False)).endswith("Hi<|im_end|>\n")


@pytest.mark.slow
def test_training_lowers_the_loss_and_writes_the_adapter(smollm2: Path, hf_cache: Path, tmp_path: Path) -> None:
    import torch

    training, held_out = countries()
    seen: list[StepMetrics] = []
    threads = torch.get_num_threads()
    hp = HyperParameters(epoch_count=1, batch_size=4, learning_rate=2e-3, max_steps=10)
    result = train(smollm2, hf_cache, training[:60], held_out[:16], hp, tmp_path / "adapter", seen.append,
                   lambda: False, threads=1)
    assert torch.get_num_threads() == threads  # process-wide: put back
    assert [m.step for m in seen] == list(range(10)) and list(result.metrics) == seen
    losses = [m.training_loss for m in seen]
    assert sum(losses[-3:]) / 3 < losses[0] / 2, losses
    assert [m.step for m in seen if m.validation_loss is not None] == [9]  # the run ends mid-epoch at maxSteps
    assert result.validation_loss is not None and result.validation_loss < losses[0]
    assert (result.steps, result.training_loss) == (10, losses[-1]) and result.peak_rss_bytes > 100 << 20
    assert seen[0].learning_rate == 2e-3 and seen[-1].learning_rate < seen[0].learning_rate  # linear decay
    config = json.loads((result.adapter_dir / "adapter_config.json").read_text())
    assert (config["r"], config["lora_alpha"]) == (8, 16)
    assert set(config["target_modules"]) == {"q_proj", "k_proj", "v_proj", "o_proj"}  # the default: attention
    assert (result.adapter_dir / "adapter_model.safetensors").stat().st_size > 1 << 20


@pytest.mark.slow
def test_should_stop_stops_before_the_next_step(smollm2: Path, hf_cache: Path, tmp_path: Path) -> None:
    training, _ = countries()
    seen: list[StepMetrics] = []
    with pytest.raises(TrainingStopped) as info:
        train(smollm2, hf_cache, training[:16], None, HyperParameters(batch_size=2), tmp_path / "adapter",
              seen.append, lambda: len(seen) >= 2, threads=1)
    assert info.value.steps == 2 and len(seen) == 2
    assert not (tmp_path / "adapter").exists()


@pytest.mark.slow
def test_a_run_cut_short_resumes_from_its_checkpoint(smollm2: Path, hf_cache: Path, tmp_path: Path) -> None:
    """Stopped after 4 of 6 steps (past an epoch boundary) and resumed: the same losses and the same adapter as
    a run that was never interrupted (dropout, data order and the optimizer's moments all carried over)."""
    from safetensors.numpy import load_file

    training, _ = countries()
    hp = HyperParameters(epoch_count=2, batch_size=4, learning_rate=2e-3)  # 12 records: 3 steps an epoch
    whole: list[StepMetrics] = []
    train(smollm2, hf_cache, training[:12], None, hp, tmp_path / "whole", whole.append, lambda: False, threads=1)
    saved: list[bytes] = []
    store = Checkpoints(lambda: saved[-1] if saved else None, saved.append, every_s=0)
    first: list[StepMetrics] = []
    with pytest.raises(TrainingStopped):
        train(smollm2, hf_cache, training[:12], None, hp, tmp_path / "cut", first.append, lambda: len(first) >= 4,
              threads=1, checkpoints=store)
    assert len(saved) == 4  # after each step but the last
    resumed: list[StepMetrics] = []
    result = train(smollm2, hf_cache, training[:12], None, hp, tmp_path / "resumed", resumed.append, lambda: False,
                   threads=1, checkpoints=store)
    assert resumed[:4] == first and [m.step for m in resumed] == list(range(6)) and len(saved) == 5
    assert [m.epoch for m in resumed] == [0, 0, 0, 1, 1, 1]
    assert [m.training_loss for m in resumed] == pytest.approx([m.training_loss for m in whole], rel=1e-5)
    assert [m.learning_rate for m in resumed] == pytest.approx([m.learning_rate for m in whole])
    a, b = (load_file(str(d / "adapter_model.safetensors")) for d in (tmp_path / "whole", result.adapter_dir))
    assert a.keys() == b.keys() and all(abs(a[k] - b[k]).max() < 1e-5 for k in a)


@pytest.mark.slow
def test_continued_pre_training_and_the_token_limit(smollm2: Path, hf_cache: Path, tmp_path: Path) -> None:
    texts = [Example(i, text=f"Granite sample {i} cooled slowly from magma deep in the crust.") for i in range(1, 9)]
    result = train(smollm2, hf_cache, texts, texts[:2], HyperParameters(batch_size=4, epoch_count=1), tmp_path / "a",
                   lambda m: None, lambda: False, threads=1)
    assert result.steps == 2 and result.validation_loss is not None
    too_long = [*texts, Example(12, text="granite " * 5000)]
    with pytest.raises(Invalid, match=r"^training data line 12 is [\d,]+ tokens long; the limit for this model is 4,096$"):
        train(smollm2, hf_cache, too_long, None, HyperParameters(), tmp_path / "b", lambda m: None, lambda: False)


def test_bedrock_metrics_files(tmp_path: Path) -> None:
    metrics = [StepMetrics(0, 0, 2.0, 7.389, 1e-4, 12), StepMetrics(1, 0, 1.0, 2.718, 1e-4, 12, 1.5, 4.482),
               StepMetrics(2, 1, 0.5, 1.649, 1e-4, 12, 1.25, 3.49)]
    assert training_metrics_csv(metrics) == ("step_number,epoch_number,training_loss,perplexity\n"
                                             "0,0,2.0,7.389\n1,0,1.0,2.718\n2,1,0.5,1.649\n")
    assert validation_metrics_csv(metrics) == ("step_number,epoch_number,validation_loss,perplexity\n"
                                               "1,0,1.5,4.482\n2,1,1.25,3.49\n")
    written = write_metrics_csv(tmp_path, metrics)
    assert [p.relative_to(tmp_path).as_posix() for p in written] == [
        "training_artifacts/step_wise_training_metrics.csv",
        "validation_artifacts/post_fine_tuning_validation/validation_metrics.csv"]
    assert [p.name for p in write_metrics_csv(tmp_path / "t", metrics[:1])] == ["step_wise_training_metrics.csv"]

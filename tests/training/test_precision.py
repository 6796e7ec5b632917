"""``trainer.precision=auto`` (attnapps/training/precision.py): bf16 only where the device computes it
natively and, on a CPU, only for a model that opts in; the run's config.yaml records the choice."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch
from omegaconf import OmegaConf
from torch import nn

from attnapps.training.precision import cpu_has_bf16_units, resolve_precision


class OptsIn(nn.Linear):
    cpu_bf16 = True


class OutputOnly(nn.Linear):
    cpu_bf16 = "output"


def units(monkeypatch, present: bool):
    for name in ("_is_amx_tile_supported", "_is_avx512_bf16_supported"):
        monkeypatch.setattr(torch.cpu, name, lambda: present, raising=False)


@pytest.mark.parametrize("value", ["fp32", "bf16", "fp16", "bf16-output"])
def test_explicit_values_pass_through(monkeypatch, value):
    units(monkeypatch, True)
    assert resolve_precision(value, torch.device("cpu"), OptsIn(2, 2)) == value


def test_cpu_with_bf16_units_picks_bf16_only_for_a_model_that_opts_in(monkeypatch):
    units(monkeypatch, True)
    assert resolve_precision("auto", torch.device("cpu"), OptsIn(2, 2)) == "bf16"
    assert resolve_precision("auto", torch.device("cpu"), nn.Linear(2, 2)) == "fp32"
    assert resolve_precision("auto", torch.device("cpu"), OutputOnly(2, 2)) == "bf16-output"


def test_cpu_without_bf16_units_stays_fp32(monkeypatch):
    units(monkeypatch, False)
    assert not cpu_has_bf16_units()
    assert resolve_precision("auto", torch.device("cpu"), OptsIn(2, 2)) == "fp32"
    assert resolve_precision("auto", torch.device("cpu"), OutputOnly(2, 2)) == "fp32"


def test_one_unit_is_enough(monkeypatch):
    monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: False, raising=False)
    monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: True, raising=False)
    assert cpu_has_bf16_units()


def test_gpu_with_bf16_support_picks_bf16_for_any_model(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: True)
    assert resolve_precision("auto", torch.device("cuda"), nn.Linear(2, 2)) == "bf16"
    assert resolve_precision("auto", torch.device("cuda"), OutputOnly(2, 2)) == "bf16"  # the whole model, on a GPU
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: False)
    assert resolve_precision("auto", torch.device("cuda"), OptsIn(2, 2)) == "fp32"


def test_other_devices_stay_fp32(monkeypatch):
    units(monkeypatch, True)
    assert resolve_precision("auto", torch.device("mps"), OptsIn(2, 2)) == "fp32"


@pytest.mark.skipif(not (sys.platform.startswith("linux") and Path("/proc/cpuinfo").is_file()),
                    reason="reads the CPU's flags from /proc/cpuinfo")
def test_unit_detection_agrees_with_the_kernels_cpu_flags():
    flags = set(Path("/proc/cpuinfo").read_text().split())
    if not flags & {"avx512f", "avx2", "asimd"}:
        pytest.skip("not an x86 or ARM CPU the flags describe")
    assert cpu_has_bf16_units() == bool(flags & {"amx_tile", "amx_bf16", "avx512_bf16"})


def test_a_generation_run_records_the_precision_it_trained_in(tmp_path):
    """The generation default is ``auto``: both its models opt in (the LSTM, and the GPT since its attention
    kernel trains in fp32 under bf16 on the CPU); config.yaml names what auto became on this machine, and
    an explicit value wins."""
    from attnapps.run import train
    from attnapps_tasks.generation.task import GenerationTask

    text = "".join(f"line {i % 7} of a small text about attention.\n" for i in range(400))
    (tmp_path / "corpus.txt").write_text(text)
    units = "bf16" if cpu_has_bf16_units() else "fp32"
    expected = {("lstm_attention", "auto"): units, ("transformer", "auto"): units, ("transformer", "fp32"): "fp32"}
    for (arch, precision), want in expected.items():
        assert OmegaConf.structured(GenerationTask.config_class).trainer.precision == "auto"
        cfg = OmegaConf.merge(OmegaConf.structured(GenerationTask.config_class), OmegaConf.from_dotlist([
            f"data.path={tmp_path / 'corpus.txt'}", f"model.arch={arch}", f"trainer.precision={precision}",
            "model.d_model=16", "model.layers=1",
            "model.heads=2", "model.context=16", "trainer.max_steps=2", "trainer.max_epochs=0",
            "trainer.max_minutes=0", "trainer.progress=false", "diag.examples=0", "explorer.examples=0",
            "sample.max_new_tokens=4", "sample.eval_tokens=64"]))
        run_dir = tmp_path / f"{arch}-{precision}"
        train(cfg, run_dir, GenerationTask)
        assert OmegaConf.load(run_dir / "config.yaml").trainer.precision == want, (arch, precision)



def test_the_rnn_translator_trains_its_output_layer_in_bf16_where_auto_picks_it(monkeypatch, tmp_path):
    """Translation's default is ``auto``; its RNN opts in with ``cpu_bf16 = "output"`` (its recurrent steps lose
    in bf16, its output layer gains): on a CPU with bf16 units the run trains with ``bf16-output`` and says so
    in config.yaml; without the units, fp32; the Transformer translator stays fp32 on a CPU."""
    from attnapps.layers import OutputLayer
    from attnapps.run import train
    from attnapps_tasks.translation.task import TranslationTask
    from tests.tasks.test_translation import reverse_data

    reverse_data(tmp_path / "data", n_train=200)
    assert OmegaConf.structured(TranslationTask.config_class).trainer.precision == "auto"
    sizes = {"rnn": ["model.embed_size=16"], "transformer": ["model.heads=2", "model.ff_size=16"]}
    for present, arch, want in [(True, "rnn", "bf16-output"), (False, "rnn", "fp32"), (True, "transformer", "fp32")]:
        units(monkeypatch, present)
        cfg = OmegaConf.merge(OmegaConf.structured(TranslationTask.config_class), OmegaConf.from_dotlist([
            f"data.path={tmp_path / 'data'}", f"model.arch={arch}", "tokenizer.vocab_size=24", "model.hidden_size=16",
            *sizes[arch], "model.layers=1", "trainer.max_steps=2",
            "trainer.max_epochs=0", "trainer.max_minutes=0", "trainer.progress=false", "decode.beam=1",
            "decode.hybrid=false", "decode.channel=0", "report.baseline=false", "diag.examples=0"]))
        run_dir = tmp_path / f"{arch}-{present}"
        train(cfg, run_dir, TranslationTask)
        assert OmegaConf.load(run_dir / "config.yaml").trainer.precision == want, (present, arch)
    from attnapps_tasks.translation.model import RNNConfig, RNNSeq2Seq

    assert isinstance(RNNSeq2Seq(RNNConfig(), 10, 10).out, OutputLayer)  # what the trainer's flag reaches

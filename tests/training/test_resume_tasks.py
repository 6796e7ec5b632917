"""Kill and resume gives the uninterrupted result, for each of the four tasks' default models (small).

The run is stopped inside step ``k`` (an exception raised before the update, like a kill: nothing after
the last checkpoint survives except log rows, which resume truncates); ``trainer.resume=true`` on the
same run directory must end with the same weights and the same metrics as a run never interrupted.
One test does it with a real ``kill -9`` of a ``python -m attnapps.run`` process at a seeded random step
(``ATTNAPPS_KILL_SEED``, default 0; the step is printed and named in every failure).
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time

import pytest
import torch
from omegaconf import OmegaConf

from attnapps.run import write_outputs
from attnapps.training import Trainer, load_checkpoint
from tests.conftest import ROOT


class Killed(Exception):
    pass


def run(task_cls, cfg, run_dir, kill_at: int = 0):
    trainer = Trainer(task_cls, cfg, run_dir)
    if kill_at:
        step = trainer.train_step

        def dying(group):
            if trainer.progress.step + 1 == kill_at:
                raise Killed
            return step(group)

        trainer.train_step = dying
    result = trainer.run()
    write_outputs(run_dir, cfg, result)
    return result.metrics


def comparable(metrics: dict) -> dict:
    return {k: v for k, v in metrics.items() if "per_sec" not in k and "seconds" not in k and "cache_hit" not in k
            and not k.startswith("time.")
            and "time_fraction" not in k and "memory" not in k}


def check_kill_and_resume(task_cls, config_cls, overrides, tmp_path, kill_at):
    cfg = lambda *more: OmegaConf.merge(OmegaConf.structured(config_cls),  # noqa: E731
                                        OmegaConf.from_dotlist([*overrides, "trainer.progress=false", *more]))
    full = run(task_cls, cfg(), tmp_path / "full")
    with pytest.raises(Killed):
        run(task_cls, cfg(), tmp_path / "killed", kill_at=kill_at)
    resumed = run(task_cls, cfg("trainer.resume=true"), tmp_path / "killed")
    assert comparable(resumed) == comparable(full)
    a = load_checkpoint(tmp_path / "full/checkpoints/last.pt")
    b = load_checkpoint(tmp_path / "killed/checkpoints/last.pt")
    assert all(torch.equal(a["model"][k], b["model"][k]) for k in a["model"])
    assert a["progress"]["step"] == b["progress"]["step"]
    return full


def write_lines(path, lines):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(line + "\n" for line in lines))


@pytest.mark.parametrize("more", [[], ["tokenizer.sampling=0.2", "decode.channel=0.5", "decode.lexicon_weight=1.5"]],
                         ids=["default", "sampled-segmentation-and-reranking"])
def test_translation_resume(tmp_path, more):
    from attnapps_tasks.translation.task import TranslationConfig, TranslationTask

    rng = random.Random(0)
    pairs = [" ".join(rng.choice(["ab", "cde", "fa", "bcd", "e"]) for _ in range(rng.randint(2, 6)))
             for _ in range(80)]
    write_lines(tmp_path / "d" / "train.tsv", [f"{p}\t{p[::-1]}" for p in pairs])
    write_lines(tmp_path / "d" / "test.tsv", [f"{p}\t{p[::-1]}" for p in pairs[:8]])
    check_kill_and_resume(TranslationTask, TranslationConfig, [
        f"data.path={tmp_path / 'd'}", "tokenizer.vocab_size=20", "model.embed_size=16", "model.hidden_size=16",
        "trainer.max_minutes=0", "trainer.max_steps=14", "trainer.batch_size=8", "trainer.checkpoint_every=4",
        "trainer.eval_every=6", "decode.beam=2", "report.examples=2", "report.figures=1", *more], tmp_path, kill_at=11)


def test_classification_resume(tmp_path):
    from attnapps_tasks.classification.task import ClassificationConfig, ClassificationTask

    rng = random.Random(0)
    words = {"pos": ["great", "fine", "superb"], "neg": ["awful", "dull", "weak"]}
    rows = [(" ".join(rng.choice(words[y]) for _ in range(5)) + " film", y) for y in ["pos", "neg"] * 30]
    write_lines(tmp_path / "d" / "train.tsv", [f"{t}\t{y}" for t, y in rows])
    write_lines(tmp_path / "d" / "test.tsv", [f"{t}\t{y}" for t, y in rows[:10]])
    # model.arch=auto: the short-text default (a BiLSTM-attention ensemble), small
    check_kill_and_resume(ClassificationTask, ClassificationConfig, [
        f"data.path={tmp_path / 'd'}", "model.embed_size=16", "model.hidden_size=8", "trainer.max_minutes=0",
        "trainer.max_steps=12", "trainer.batch_size=8", "trainer.checkpoint_every=5", "trainer.eval_every=4",
        "report.baseline=false", "report.examples=2"], tmp_path, kill_at=8)


def test_generation_resume(tmp_path):
    from attnapps_tasks.generation.task import GenerationConfig, GenerationTask

    write_lines(tmp_path / "c.txt", ["It is a truth universally acknowledged, that a single man."] * 60)
    check_kill_and_resume(GenerationTask, GenerationConfig, [
        f"data.path={tmp_path / 'c.txt'}", f"data.cache_dir={tmp_path / 'cache'}", "model.context=16",
        "model.d_model=16", "model.layers=1", "model.heads=2", "model.dropout=0.1", "trainer.max_minutes=0",
        "trainer.max_steps=12", "trainer.batch_size=4", "trainer.checkpoint_every=5", "trainer.eval_every=6",
        "sample.max_new_tokens=10", "sample.heatmap_tokens=8", "sample.temperatures=[0.8]"], tmp_path, kill_at=9)


@pytest.mark.slow
@pytest.mark.parametrize("encoder", ["small_cnn", "resnet18"])
def test_captioning_resume(tmp_path, encoder):
    """small_cnn: the default (the encoder trains); resnet18 (random weights, frozen): the default for real
    image sets, with the retrieved memory and the self-critical phase from half the steps (sampling)."""
    from attnapps_tasks.captioning.synthetic import write_synthetic
    from attnapps_tasks.captioning.task import CaptioningConfig, CaptioningTask

    write_synthetic(tmp_path / "d", seed=1, splits=(("train", 24), ("val", 4), ("test", 4)))
    check_kill_and_resume(CaptioningTask, CaptioningConfig, [
        f"data.path={tmp_path / 'd'}", f"data.cache_dir={tmp_path / 'cache'}", f"encoder.name={encoder}",
        "encoder.image_size=32", "model.hidden_size=16", "model.embed_size=8", "model.retrieval_k=2",
        "model.scst_samples=2", "trainer.max_minutes=0", "trainer.max_steps=10", "trainer.batch_size=4",
        "trainer.checkpoint_every=3", "trainer.eval_every=4", "decode.beam=2", "report.figures=1",
        "report.examples=1"], tmp_path, kill_at=8)


@pytest.mark.slow
def test_kill_9_at_a_random_step_then_resume(tmp_path):
    """A real ``python -m attnapps.run`` (generation) killed with SIGKILL at a random step after the first
    checkpoint; the resumed run ends with the uninterrupted run's weights and metrics."""
    write_lines(tmp_path / "c.txt", ["It is a truth universally acknowledged, that a single man."] * 80)
    args = [sys.executable, "-m", "attnapps.run", "task=generation", f"data.path={tmp_path / 'c.txt'}",
            f"data.cache_dir={tmp_path / 'cache'}", "model.context=16", "model.d_model=16", "model.layers=1",
            "model.heads=2", "model.dropout=0.1", "trainer.max_minutes=0", "trainer.max_steps=300",
            "trainer.batch_size=4", "trainer.checkpoint_every=20", "trainer.eval_every=100", "trainer.log_every=1",
            "trainer.progress=false", "sample.max_new_tokens=10", "sample.temperatures=[0.8]"]
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    full = subprocess.run([*args, f"hydra.run.dir={tmp_path / 'full'}"], env=env, capture_output=True, text=True)
    assert full.returncode == 0, full.stderr[-2000:]
    seed = int(os.environ.get("ATTNAPPS_KILL_SEED", "0"))  # another seed, another step: ATTNAPPS_KILL_SEED=N
    target = random.Random(seed).randint(25, 250)
    print(f"killing at step {target} (ATTNAPPS_KILL_SEED={seed})")
    proc = subprocess.Popen([*args, f"hydra.run.dir={tmp_path / 'killed'}"], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    log = tmp_path / "killed" / "log.csv"
    while proc.poll() is None:
        rows = log.read_text().splitlines() if log.exists() else []
        if rows and rows[-1].split(",")[0].isdigit() and int(rows[-1].split(",")[0]) >= target:
            os.kill(proc.pid, signal.SIGKILL)
            break
        time.sleep(0.01)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL, f"the run finished before step {target} (ATTNAPPS_KILL_SEED={seed})"
    resumed = subprocess.run([*args, f"hydra.run.dir={tmp_path / 'killed'}", "trainer.resume=true"], env=env,
                             capture_output=True, text=True)
    where = f"killed at step {target} (ATTNAPPS_KILL_SEED={seed})"
    assert resumed.returncode == 0, f"{where}: {resumed.stderr[-2000:]}"
    a = json.loads((tmp_path / "full/metrics.json").read_text())
    b = json.loads((tmp_path / "killed/metrics.json").read_text())
    assert comparable(a) == comparable(b), where
    wa = load_checkpoint(tmp_path / "full/checkpoints/best.pt")["model"]
    wb = load_checkpoint(tmp_path / "killed/checkpoints/best.pt")["model"]
    assert all(torch.equal(wa[k], wb[k]) for k in wa), where

"""scripts/bench_toolkits.py: reading each side's log into the same speed, the fairseq rewrite for Python
3.11, the nanoGPT-style reference loop, and (slow) one pair end to end. The toolkits themselves are not
installed here (the script makes their virtualenv); their log lines below are copied from real runs."""

from __future__ import annotations

import re
import subprocess
import sys
import textwrap

import pytest

from tests.test_scripts_smoke import load, markdown_rows, script

FAIRSEQ_LOG = """\
2026-12-05 12:27:31 | INFO | fairseq_cli.train | num. shared model params: 3,591,424 (num. trained: 3,591,424)
2026-12-05 12:27:35 | INFO | train_inner | {"epoch": 1, "update": 0.046, "loss": "15.708", "wps": "4593.6", "ups": "4.61", "wpb": "949.9", "bsz": "64", "num_updates": "10", "wall": "4"}
2026-12-05 12:27:37 | INFO | train_inner | {"epoch": 1, "update": 0.092, "loss": "12.897", "wps": "4203", "ups": "5.49", "wpb": "765.7", "bsz": "64", "num_updates": "20", "wall": "6"}
2026-12-05 12:27:39 | INFO | train_inner | {"epoch": 1, "update": 0.138, "loss": "11.2", "wps": "5000", "ups": "5.0", "wpb": "1000", "bsz": "64", "num_updates": "30", "wall": "8"}
2026-12-05 12:27:40 | INFO | train | {"epoch": 1, "train_loss": "11.9", "wps": "4500", "num_updates": "30"}
"""
ONMT_LOG = """\
[2026-12-05 12:28:46,035 INFO] Step 10/  100; acc: 5.1; ppl: 1637.3; xent: 7.4; lr: 0.00300; sents:     640; bsz:  818/ 988/64; 1616/1952 tok/s;      5 sec;
[2026-12-05 12:28:47,993 INFO] Step 20/  100; acc: 11.1; ppl: 606.9; xent: 6.4; lr: 0.00300; sents:     640; bsz:  667/ 745/64; 3405/3807 tok/s;      7 sec;
[2026-12-05 12:28:49,970 INFO] Step 30/  100; acc: 12.6; ppl: 500.2; xent: 6.2; lr: 0.00300; sents:     640; bsz:  708/ 800/64; 3581/4000 tok/s;      9 sec;
"""


@pytest.fixture(scope="module")
def bench():
    return load("bench_toolkits.py")


def test_fairseq_intervals_become_cumulative_tokens_and_seconds(bench):
    points = bench.fairseq_points(FAIRSEQ_LOG)  # only train_inner lines, not the epoch summary
    assert [p[0] for p in points] == [10, 20, 30]
    # each interval: wpb x 10 updates tokens, over wps
    assert points[1][2] == pytest.approx(9499 + 7657)
    assert points[2][1] - points[1][1] == pytest.approx(10000 / 5000)
    # the window from update 20 to 30 is the last interval's own rate
    assert bench.window(points, 20) == pytest.approx(5000)
    assert bench.per_batch(points[1:]) == pytest.approx(1000)


def test_onmt_report_lines_use_the_target_side(bench):
    points = bench.onmt_points(ONMT_LOG)
    assert [p[0] for p in points] == [10, 20, 30]
    assert points[0][2] == pytest.approx(9880)  # 988 target tokens a batch x 10
    assert bench.window(points, 20) == pytest.approx(4000)  # the target tok/s, not the source's 3581


def test_ours_reads_the_running_count_of_log_csv(bench, tmp_path):
    (tmp_path / "log.csv").write_text("step,epoch,elapsed_s,key,value\n1,0,0.5,train.loss,7.0\n"
                                      "1,0,0.5,train.tokens_seen,1000\n10,0,2.5,train.tokens_seen,10000\n"
                                      "20,0,4.5,train.tokens_seen,19000\n")
    points = bench.ours_points(tmp_path, "tokens")
    assert points == [(1, 0.5, 1000.0), (10, 2.5, 10000.0), (20, 4.5, 19000.0)]
    assert bench.window(points, 10) == pytest.approx(9000 / 2.0)
    with pytest.raises(ValueError, match="fewer than two reports"):
        bench.window(points, 15)


def test_fairseq_dataclass_defaults_are_rewritten_to_factories(bench, tmp_path, monkeypatch):
    """What fairseq 0.12.2 and hydra-core 1.0 do on Python >= 3.11 (a dataclass instance as a default),
    in a stand-in package: it fails to import before the rewrite and imports after, with the same
    defaults, and hydra_init's reader gets the factory's value."""
    fairseq = tmp_path / "fairseq"
    (fairseq / "dataclass").mkdir(parents=True)
    (tmp_path / "hydra" / "conf").mkdir(parents=True)
    (tmp_path / "hydra" / "__init__.py").write_text("")
    (tmp_path / "hydra" / "conf" / "__init__.py").write_text("")
    (fairseq / "__init__.py").write_text("")
    (fairseq / "dataclass" / "__init__.py").write_text("")
    (fairseq / "dataclass" / "configs.py").write_text(textwrap.dedent("""\
        from dataclasses import dataclass, field

        @dataclass
        class CommonConfig:
            seed: int = 1

        @dataclass
        class FairseqConfig:
            common: CommonConfig = CommonConfig()
            other: CommonConfig = field(default=CommonConfig())
        """))
    (fairseq / "dataclass" / "initialize.py").write_text(textwrap.dedent("""\
        from fairseq.dataclass.configs import FairseqConfig

        def hydra_init():
            out = {}
            for k in FairseqConfig.__dataclass_fields__:
                v = FairseqConfig.__dataclass_fields__[k].default
                out[k] = v
            return out
        """))
    monkeypatch.setenv("PYTHONPATH", str(tmp_path))
    probe = [sys.executable, "-c", "from fairseq.dataclass.initialize import hydra_init; print(hydra_init())"]
    before = subprocess.run(probe, capture_output=True, text=True)
    if sys.version_info >= (3, 11):
        assert before.returncode != 0 and "mutable default" in before.stderr
    bench.patch_fairseq(sys.executable)
    after = subprocess.run(probe, capture_output=True, text=True)
    assert after.returncode == 0, after.stderr
    assert after.stdout.strip() == "{'common': CommonConfig(seed=1), 'other': CommonConfig(seed=1)}"


def test_nanogpt_reference_loop_counts_tokens_and_learns(tmp_path):
    text = tmp_path / "text.txt"
    text.write_text("the cat sat on the mat. " * 400)
    r = script("toolkits/nanogpt_loop.py", str(text), "--steps", "60", "--layers", "1", "--width", "32",
               "--heads", "2", "--context", "16", "--batch", "4", "--lr", "1e-2")
    rows = [line.split() for line in r.stdout.splitlines() if line.startswith("step ")]
    assert [int(x[1]) for x in rows] == [10, 20, 30, 40, 50, 60]
    assert [int(x[5]) for x in rows] == [10 * 4 * 16 * (i + 1) for i in range(6)]  # steps x batch x context
    seconds, losses = [float(x[3]) for x in rows], [float(x[7]) for x in rows]
    assert seconds == sorted(seconds) and losses[-1] < 1.5 < losses[0]  # 9 characters: ln 9 = 2.2 at the start


@pytest.mark.slow
def test_gpt_pair_end_to_end_ratio_is_ours_over_theirs(tmp_path):
    """``gpt`` runs ours at its default precision (auto), ``gpt-fp32`` in fp32; the loop is fp32 in both."""
    from omegaconf import OmegaConf

    from attnapps.training.precision import cpu_has_bf16_units

    r = script("bench_toolkits.py", "--pairs", "gpt,gpt-fp32", "--updates", "40", "--warmup", "10", "--repeats",
               "1", "--work", str(tmp_path), timeout=600)
    rows = markdown_rows(r.stdout)[1:]
    assert [row[0].split(" vs ")[0] for row in rows] == ["gpt", "gpt-fp32"]
    for row in rows:
        ours, theirs = float(row[1].replace(",", "")), float(row[2].replace(",", ""))
        assert float(row[3].strip("*x")) == pytest.approx(ours / theirs, abs=0.006)  # one run each: the one pair
        assert float(row[4]) == pytest.approx(ours / theirs, abs=0.006)
        assert row[5] == "768 / 768"  # 12 windows of 64 characters a batch on both sides
    precision = {name: OmegaConf.load(tmp_path / "runs" / f"{name}-ours-1" / "config.yaml").trainer.precision
                 for name in ("gpt", "gpt-fp32")}
    assert precision == {"gpt": "bf16" if cpu_has_bf16_units() else "fp32", "gpt-fp32": "fp32"}


TINY_GPT = ["model.arch=transformer", "model.d_model=32", "model.layers=1", "model.heads=2", "model.context=32",
            "trainer.batch_size=4"]


def test_profile_step_accounts_for_the_whole_step(tmp_path):
    """scripts/profile_step.py: the groups and phases of a step add up to its wall time; a Transformer has
    matmuls and attention and no recurrent kernels; with --variants the ratio column is eager over each."""
    r = script("profile_step.py", "--tasks", "generation", "--steps", "3", "--warmup", "1", *TINY_GPT)
    header, row = markdown_rows(r.stdout)
    shares = dict(zip(header[2:], (float(c.rstrip("%")) for c in row[2:])))
    assert row[0].startswith("generation (transformer,")
    assert 97 <= sum(shares.values()) <= 103
    assert shares["matmul"] > 0 and shares["attention"] > 0 and shares["recurrent"] == 0
    r = script("profile_step.py", "--tasks", "generation", "--steps", "3", "--warmup", "1", "--variants", "eager,bf16",
               *TINY_GPT)
    header, row = markdown_rows(r.stdout)
    eager, bf16 = (float(c.split()[0]) for c in row[1:3])
    assert float(row[3].rstrip("x")) == pytest.approx(eager / bf16, rel=0.04)  # (of the unrounded milliseconds)
    r = script("profile_step.py", "--tasks", "generation", "--steps", "2", "--warmup", "1", "--floor", *TINY_GPT)
    peak = float(re.search(r"fp32 matmul peak: (\d+) GFLOP/s", r.stdout).group(1))
    header, row = markdown_rows(r.stdout)
    gflop, at_peak, step, share = float(row[1]), float(row[2]), float(row[3]), float(row[4].rstrip("%"))
    # the tiny GPT's matmuls: at least its linear layers, 3 x 2 x 128 tokens x 12 x 32 x 32 weights (9.4 MFLOP)
    assert gflop > 0.0094 and at_peak == pytest.approx(1e3 * gflop / peak, rel=0.01)
    assert share == pytest.approx(100 * at_peak / step, rel=0.06) and 0 < share < 100

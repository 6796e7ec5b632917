"""``trainer.keep_freed_memory``: glibc's allocator keeps freed blocks, so a step that allocates and frees
the same tensors again takes no page faults (each costs the kernel a zeroed 4 KiB page)."""

import os
import subprocess
import sys

import pytest

from attnapps.training import allocator

PATTERN = """
import sys, torch
from attnapps.training.allocator import keep_freed_memory, minor_faults
applied = keep_freed_memory() if sys.argv[1] == "keep" else None
def step():  # a training step's shape: tensors of several sizes (0.75 to 8.25 MiB), written, then freed
    live = [torch.ones(n * 65536) for n in (3, 5, 9, 17, 33, 7)]
    live.clear()
for _ in range(3):
    step()
start = minor_faults()
for _ in range(20):
    step()
print(applied, (minor_faults() - start) / 20)
"""

glibc = pytest.mark.skipif(allocator._glibc() is None, reason="glibc's mallopt: Linux with glibc only")


def faults_per_step(mode: str, **env) -> tuple[str, float]:
    clean = {k: v for k, v in os.environ.items() if k not in allocator.ENV and k != "GLIBC_TUNABLES"}
    out = subprocess.run([sys.executable, "-c", PATTERN, mode], capture_output=True, text=True, check=True,
                         env={**clean, **env}).stdout.split()
    return out[0], float(out[1])


@glibc
def test_kept_memory_takes_no_page_faults_where_returned_memory_takes_thousands():
    applied, kept = faults_per_step("keep")
    assert applied == "True"
    assert kept < 100  # the blocks come back from the heap, already mapped (typically 0-20 faults a step)
    # glibc's starting thresholds held fixed (its defaults move them, step by step, as blocks are freed:
    # from one run to the next anywhere between this and no faults): thousands of fresh pages a step
    _, returned = faults_per_step("default", MALLOC_MMAP_THRESHOLD_="131072", MALLOC_TRIM_THRESHOLD_="131072")
    assert returned > 2000


@glibc
def test_the_users_own_malloc_settings_win():
    applied, faults = faults_per_step("keep", MALLOC_TRIM_THRESHOLD_="1")  # trim at once: every step faults
    assert applied == "False" and faults > 1000
    applied, _ = faults_per_step("keep", GLIBC_TUNABLES="glibc.malloc.trim_threshold=1")
    assert applied == "False"


def test_off_glibc_it_does_nothing(monkeypatch):
    monkeypatch.setattr(allocator, "_applied", None)
    monkeypatch.setattr(allocator, "_glibc", lambda: None)
    assert allocator.keep_freed_memory() is False

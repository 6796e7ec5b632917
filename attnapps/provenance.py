"""Where a run's numbers come from: code version, command, software, hardware and data fingerprints.

Data readers call :func:`record_file` for every file they read (``attnapps.data.files.read_lines``
does it for text files) and :func:`record_files` for a large set of files read as one unit (an image
folder); :func:`data_fingerprints` returns what was recorded since :func:`start_recording`. The
trainer stores the fingerprints in every checkpoint (resume refuses data that changed) and writes
:func:`collect` to ``provenance.json`` and the report.
"""

from __future__ import annotations

import hashlib
import os
import platform
import subprocess
import sys
from importlib import metadata
from pathlib import Path
from typing import Iterable

import torch

_command: list[str] = []  # the command line as the user typed it (set by the entry point)
_files: dict[str, str] = {}  # resolved path -> "sha256:<hex>"
_groups: dict[str, str] = {}  # label -> "<n> files, sha256 of names, sizes and mtimes:<hex>"
_stats: dict[str, tuple[int, int]] = {}  # resolved path -> (size, mtime) when it was hashed
KEY_PACKAGES = ("torch", "torchvision", "numpy", "sacrebleu", "nltk", "sentencepiece", "hydra-core",
                "omegaconf", "pillow", "scikit-learn", "efficientnet-lite-pytorch")


def set_command(argv: list[str]) -> None:
    _command[:] = argv


def start_recording() -> None:
    """Forget what was recorded (a new run starts reading its data)."""
    _files.clear()
    _stats.clear()
    _groups.clear()


def sha256_file(path: str | os.PathLike, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def record_file(path: str | os.PathLike) -> str:
    """Note that a data file was read (hashed once per run); its fingerprint, ``sha256:<hex>``."""
    key = str(Path(path).resolve())
    st = os.stat(key)
    if _stats.get(key) != (st.st_size, st.st_mtime_ns):  # new, or rewritten since it was hashed
        _files[key], _stats[key] = "sha256:" + sha256_file(key), (st.st_size, st.st_mtime_ns)
    return _files[key]


def record_files(label: str, paths: Iterable[str | os.PathLike]) -> str:
    """Note a large set of files read as one unit (e.g. thousands of images): one SHA-256 over each
    file's name, size and modification time, not over their bytes (hashing a 100k-image set would cost
    minutes; the feature cache is keyed the same way). Returns that fingerprint."""
    h, n = hashlib.sha256(), 0
    for p in sorted(str(p) for p in paths):
        try:
            st = os.stat(p)
            h.update(f"{p}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
        except OSError:
            h.update(f"{p}\0missing\n".encode())
        n += 1
    _groups[label] = f"{n} files, sha256 of names, sizes and mtimes:{h.hexdigest()}"
    return _groups[label]


def data_fingerprints() -> dict[str, str]:
    """``{path or label: fingerprint}`` of everything recorded since :func:`start_recording`."""
    return {**dict(sorted(_files.items())), **dict(sorted(_groups.items()))}


def changed_data(saved: dict[str, str], now: dict[str, str]) -> list[str]:
    """The files of this run (or of the checkpoint) whose content the other does not have. Compared by
    content, not by path: the same files moved elsewhere are the same data."""
    def content(v: str) -> str:
        return v.split(":", 1)[-1] if v.startswith("sha256:") else v.split(",", 1)[-1]

    theirs, ours = {content(v) for v in saved.values()}, {content(v) for v in now.values()}
    return sorted([k for k, v in now.items() if content(v) not in theirs]
                  + [f"{k} (gone)" for k, v in saved.items() if content(v) not in ours])


def _git(*args: str) -> str | None:
    root = Path(__file__).resolve().parent.parent
    try:
        out = subprocess.run(["git", "-C", str(root), *args], capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() if out.returncode == 0 else None


def code_version() -> dict:
    """Git commit of the attnapps checkout and whether its tree had uncommitted changes (None: not a
    git checkout, e.g. an installed wheel)."""
    commit = _git("rev-parse", "HEAD")
    status = _git("status", "--porcelain", "--untracked-files=no") if commit else None
    version = None
    try:
        version = metadata.version("attnapps")
    except metadata.PackageNotFoundError:
        pass
    return {"attnapps": version, "git_commit": commit, "git_dirty": bool(status) if commit else None}


def software() -> dict:
    out = {"python": platform.python_version()}
    for name in KEY_PACKAGES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return out


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def hardware(device: torch.device | None = None) -> dict:
    out = {"cpu": cpu_model(), "cpu_count": os.cpu_count(), "torch_threads": torch.get_num_threads(),
           "platform": platform.platform()}
    if torch.cuda.is_available():
        out["gpu"] = torch.cuda.get_device_name(device if device is not None and device.type == "cuda" else 0)
        out["gpu_count"] = torch.cuda.device_count()
    else:
        out["gpu"] = None
    if device is not None:
        out["device"] = str(device)
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world > 1:
        out["world_size"] = world
    return out


def collect(device: torch.device | None = None, data: dict[str, str] | None = None) -> dict:
    """Everything ``provenance.json`` holds."""
    return {"code": code_version(), "command": list(_command) or [Path(sys.executable).name, *sys.argv],
            "cwd": os.getcwd(), "software": software(), "hardware": hardware(device),
            "data": data if data is not None else data_fingerprints()}


def markdown(prov: dict) -> list[str]:
    """The report's provenance section."""
    c, s, h = prov["code"], prov["software"], prov["hardware"]
    commit = c["git_commit"] or "not a git checkout"
    if c["git_dirty"]:
        commit += " (uncommitted changes)"
    lines = ["## Provenance", "", f"- code: attnapps {c['attnapps'] or '?'}, commit `{commit}`",
             "- command: `" + " ".join(prov["command"]) + "`",
             "- software: " + ", ".join(f"{k} {v}" for k, v in s.items()),
             f"- hardware: {h['cpu']} ({h['cpu_count']} CPUs, {h['torch_threads']} torch threads), "
             f"GPU: {h['gpu'] or 'none'}" + (f", device {h['device']}" if h.get("device") else ""),
             f"- data ({len(prov['data'])} files or file sets; `provenance.json` has every SHA-256):"]
    for k, v in list(prov["data"].items())[:10]:
        lines.append(f"  - `{k}`: `{v[:23]}…`" if v.startswith("sha256:") else f"  - `{k}`: {v[:v.rindex(':') + 17]}…")
    if len(prov["data"]) > 10:
        lines.append(f"  - … and {len(prov['data']) - 10} more")
    return lines

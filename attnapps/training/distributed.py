"""torch.distributed when launched by torchrun (``WORLD_SIZE`` set), a no-op otherwise."""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.distributed as dist


@dataclass
class DistInfo:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def launched_by_torchrun() -> bool:
    return int(os.environ.get("WORLD_SIZE", "1")) > 1


def restart_count() -> int:
    """How many times torchrun has restarted this worker group after a failure (``--max-restarts``)."""
    return int(os.environ.get("TORCHELASTIC_RESTART_COUNT", "0") or 0)


def restarts_share_the_store() -> bool:
    """torchrun may restart the workers (``--max-restarts`` > 0) and shares its rendezvous store with them:
    then a restarted group can read the previous attempt's addresses and fail to connect (PyTorch issue
    #135712); ``TORCH_DISABLE_SHARE_RDZV_TCP_STORE=1`` gives each attempt its own store."""
    return (int(os.environ.get("TORCHELASTIC_MAX_RESTARTS", "0") or 0) > 0
            and os.environ.get("TORCHELASTIC_USE_AGENT_STORE") == "True")


def elastic_record() -> Path | None:
    """Under torchrun, the file where rank 0 notes its run directory on the first attempt, so that a
    restarted attempt (whose default ``hydra.run.dir`` would be a new timestamp) goes on in the same one.
    Keyed by the rendezvous id, which stays the same across restarts (None outside torchrun)."""
    run_id = os.environ.get("TORCHELASTIC_RUN_ID")
    if not run_id:
        return None
    safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in run_id)
    return Path(tempfile.gettempdir()) / f"attnapps-{os.getuid()}-torchrun-{safe}.rundir"


def setup(device: torch.device) -> DistInfo:
    """Join the process group torchrun prepared: nccl on CUDA, gloo on CPU."""
    if not launched_by_torchrun():
        return DistInfo()
    if not dist.is_initialized():
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    return DistInfo(dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", 0)))


def pick_device(name: str) -> torch.device:
    """``trainer.device``: auto (CUDA if present, else CPU) | cpu | cuda | cuda:N | mps."""
    from attnapps.errors import ConfigError

    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError(f"trainer.device={name}: CUDA is not available on this machine")
    return torch.device(name)


def setup_device(name: str) -> tuple[torch.device, DistInfo]:
    """The device of this process and its place in the process group: under torchrun on CUDA, the GPU
    of its local rank."""
    device = pick_device(name)
    info = setup(device)
    if device.type == "cuda" and info.enabled:
        device = torch.device("cuda", info.local_rank)
        torch.cuda.set_device(device)
    return device, info


def all_reduce_sum(t: torch.Tensor) -> torch.Tensor:
    if dist.is_available() and dist.is_initialized():
        dist.all_reduce(t, op=dist.ReduceOp.SUM)
    return t


def all_reduce_max(t: torch.Tensor) -> torch.Tensor:
    if dist.is_available() and dist.is_initialized():
        dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return t


def broadcast_tensor(t: torch.Tensor, src: int = 0) -> torch.Tensor:
    """Rank ``src``'s value on every rank (decisions are rank 0's)."""
    if dist.is_available() and dist.is_initialized():
        t = t.to("cuda") if dist.get_backend() == "nccl" else t
        dist.broadcast(t, src=src)
        t = t.cpu()
    return t


def all_gather_object(obj) -> list:
    """Every rank's ``obj``, in rank order (``[obj]`` without torch.distributed)."""
    if not (dist.is_available() and dist.is_initialized()):
        return [obj]
    out = [None] * dist.get_world_size()
    dist.all_gather_object(out, obj)
    return out


def broadcast_object(obj, src: int = 0):
    if not (dist.is_available() and dist.is_initialized()):
        return obj
    holder = [obj]
    dist.broadcast_object_list(holder, src=src)
    return holder[0]


def barrier() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.barrier()


def teardown() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()

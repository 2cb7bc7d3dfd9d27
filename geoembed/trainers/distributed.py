"""torchrun support for the fit loop: join the process group, pick this rank's device."""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist

from geoembed.devices import resolve_device


@dataclass
class DistInfo:
    """Where this process sits in a torchrun job (one process: not enabled, rank 0)."""

    enabled: bool = False
    rank: int = 0
    world: int = 1
    local_rank: int = 0
    owns_group: bool = False

    @property
    def main(self) -> bool:
        """Whether this is the process that writes checkpoints, metrics and progress."""
        return self.rank == 0


def setup_distributed(device_name: str) -> DistInfo:
    """Join the process group when launched by torchrun (WORLD_SIZE > 1)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return DistInfo()
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    owns = False
    if not dist.is_initialized():
        use_nccl = torch.cuda.is_available() and device_name in ("auto", "cuda")
        if use_nccl:
            torch.cuda.set_device(local_rank)
        dist.init_process_group(backend="nccl" if use_nccl else "gloo")
        owns = True
    return DistInfo(True, rank, world, local_rank, owns)


def device_for(dist_info: DistInfo, device_name: str) -> torch.device:
    """The device to train on: under torchrun with CUDA, this process's local GPU."""
    device = resolve_device(device_name)
    if dist_info.enabled and device.type == "cuda":
        return torch.device("cuda", dist_info.local_rank)
    return device

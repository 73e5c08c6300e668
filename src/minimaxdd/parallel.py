"""Single-node data parallelism: run a function in N processes joined in one torch process group.

NCCL on CUDA (rank r uses GPU r), gloo on the CPU (as the tests do). The processes are spawned
rather than forked, so a workflow script that launches them must guard its body with
`if __name__ == "__main__":` (spawned children import it again).
"""

from __future__ import annotations

import socket
from typing import Callable

import torch
import torch.distributed as dist

from .io import pick_device


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def rank_device(device: torch.device, rank: int) -> torch.device:
    return torch.device("cuda", rank) if device.type == "cuda" else device


def spawn(fn: Callable, world_size: int, device: torch.device, *args) -> None:
    """Call fn(rank, world_size, device_of_rank, *args) in `world_size` processes; raises if any fails."""
    if device.type == "cuda" and torch.cuda.device_count() < world_size:
        raise ValueError(f"finetune.gpus is {world_size} but only {torch.cuda.device_count()} GPUs are visible")
    threads = max(1, torch.get_num_threads() // world_size)
    torch.multiprocessing.spawn(_run, args=(fn, world_size, device, free_port(), threads, args),
                                nprocs=world_size, join=True)


def _run(rank: int, fn: Callable, world_size: int, device: torch.device, port: int, threads: int, args) -> None:
    torch.set_num_threads(threads)
    device = rank_device(device, rank)
    if device.type == "cuda":
        pick_device("cuda", tf32=True)  # TF32 settings are per process
        torch.cuda.set_device(device)
    dist.init_process_group("nccl" if device.type == "cuda" else "gloo", init_method=f"tcp://127.0.0.1:{port}",
                            rank=rank, world_size=world_size)
    try:
        fn(rank, world_size, device, *args)
    finally:
        dist.destroy_process_group()

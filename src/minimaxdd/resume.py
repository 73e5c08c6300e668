"""Resume checkpoints of long jobs (base-model training, fine-tuning, validation).

A job saves its whole training state (weights, optimizer, RNG states, memories, step) every
`every` steps to one file next to its output, written atomically. Rerun after a kill, the job
continues from that state and ends with the same result as an uninterrupted run. The checkpoint
carries a fingerprint of the job's settings and input files: after a change to either, it is
ignored, and the job starts over. It is deleted once the job's output is written.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any, Callable

from .io import load_torch, save_torch


def fingerprint(settings: Any, inputs: list[str | os.PathLike] = ()) -> str:
    """The job's settings and the identity (size, modification time) of its input files."""
    files = []
    for path in inputs:
        stat = Path(path).stat()
        files.append([str(path), stat.st_size, stat.st_mtime_ns])
    text = json.dumps({"settings": settings, "inputs": files}, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()


class Checkpointer:
    """Save every `every` steps to `path` (None: never); `load` returns the state of a matching checkpoint."""

    def __init__(self, path: str | os.PathLike | None = None, every: int = 1, fingerprint: str = "",
                 log: Callable = print):
        self.path = Path(path) if path else None
        self.every = every
        self.fingerprint = fingerprint
        self.log = log

    @classmethod
    def next_to(cls, output: str | os.PathLike, every: int, settings: Any, inputs: list) -> Checkpointer:
        """The checkpoint of the job writing `output`: `<output>.resume.pt`."""
        return cls(f"{output}.resume.pt", every, fingerprint(settings, inputs))

    def load(self) -> dict | None:
        if self.path is None or not self.path.exists():
            return None
        try:
            saved = load_torch(self.path)
        except Exception as error:  # a checkpoint is a cache: a broken one costs time, not results
            self.log(f"ignoring unreadable checkpoint {self.path}: {error}")
            return None
        if saved.get("fingerprint") != self.fingerprint:
            self.log(f"ignoring checkpoint {self.path}: it belongs to other settings or inputs")
            return None
        self.log(f"resuming from checkpoint {self.path} at step {saved['step']}")
        return saved

    def due(self, step: int, last: int) -> bool:
        return self.path is not None and step % self.every == 0 and step < last

    def save(self, step: int, state: dict) -> None:
        save_torch({"fingerprint": self.fingerprint, "step": step, **state}, self.path)

    def remove(self) -> None:
        if self.path is not None:
            self.path.unlink(missing_ok=True)

"""Atomic file writing and small helpers shared by every stage.

Every artifact is written to a temporary name in the target folder and renamed into place, so a
killed job never leaves a file that a later run would take as complete.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import shutil
import socket
import tempfile
import traceback
from pathlib import Path
from typing import Any, Iterator

import torch


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


UMASK = _umask()  # mkstemp / mkdtemp make private (0600 / 0700) entries; artifacts get the usual modes


def _named(error: OSError, path: Path) -> OSError:
    """A full disk, named: the bare errno message does not say where."""
    if error.errno == errno.ENOSPC:
        return OSError(errno.ENOSPC, f"No space left on device while writing {path}")
    return error


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path next to `path`; rename it to `path` only if the block succeeds."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    tmp = Path(tmp)
    try:
        yield tmp
        os.chmod(tmp, 0o666 & ~UMASK)
        os.replace(tmp, path)
    except OSError as error:
        raise _named(error, path)
    finally:
        tmp.unlink(missing_ok=True)


@contextlib.contextmanager
def atomic_dir(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary folder next to `path`; it replaces `path` only if the block succeeds."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent))
    try:
        yield tmp
        os.chmod(tmp, 0o777 & ~UMASK)
        if path.exists():  # keep the old version aside until the new one is in place, then drop it
            old = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".old", dir=path.parent))
            os.replace(path, old / path.name)
            os.replace(tmp, path)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, path)
    except OSError as error:
        raise _named(error, path)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def save_torch(obj: Any, path: str | os.PathLike) -> None:
    with atomic_path(path) as tmp:
        torch.save(obj, tmp)


def load_torch(path: str | os.PathLike) -> Any:
    return torch.load(path, map_location="cpu", weights_only=False)


def save_json(obj: Any, path: str | os.PathLike) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(obj, indent=2, sort_keys=True) + "\n")


def save_text(text: str, path: str | os.PathLike) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text)


def job_environment() -> dict:
    """Where a job ran, for its run record: the host, and the SLURM job id under a SLURM executor."""
    return {"host": socket.gethostname(), "slurm_job_id": os.environ.get("SLURM_JOB_ID")}


def pick_device(requested: str = "auto") -> torch.device:
    """`auto` takes CUDA when present, else the CPU. On CUDA, float32 matmuls may use TF32."""
    if requested == "auto":
        requested = "cuda" if torch.cuda.is_available() else "cpu"
    if requested == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    return torch.device(requested)


@contextlib.contextmanager
def job_context(log_path: str | os.PathLike, threads: int) -> Iterator[None]:
    """Run a workflow job: torch uses the job's threads; prints and progress bars go to its log."""
    torch.set_num_threads(max(1, threads))
    Path(log_path).parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "w") as log, contextlib.redirect_stdout(log), contextlib.redirect_stderr(log):
        try:
            yield
        except BaseException:
            traceback.print_exc()  # into the job's log too, not only onto the workflow's console
            raise

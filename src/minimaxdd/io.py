"""Atomic file writing, content checksums and small helpers shared by every stage.

Every artifact is written to a temporary name in the target folder and renamed into place, so a
killed job never leaves a file that a later run would take as complete. Each artifact of a kind
a job reads (ARTIFACT_SUFFIXES) gets its checksum beside it, `.<name>.sha256` (SHA-256 and size),
written before the artifact is renamed into place; its readers verify the content against it
(`verify`), every start compares the sizes (`damaged_artifacts`), and a repair run compares every
content (a scrub).
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import os
import re
import shutil
import socket
import tempfile
import traceback
import zipfile
from pathlib import Path
from typing import Any, Iterator

import torch


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


UMASK = _umask()  # mkstemp / mkdtemp make private (0600 / 0700) entries; artifacts get the usual modes

# The names atomic_path and atomic_dir give their temporaries (mkstemp / mkdtemp put 8 random
# characters between prefix and suffix); atomic_dir also keeps the old version in a `.old` folder.
TEMP_FILE = re.compile(r"\..+\.[a-z0-9_]{8}\.tmp")
TEMP_FOLDER = re.compile(r"\..+\.[a-z0-9_]{8}\.(tmp|old)")


# The kinds of artifact jobs read back: each is written with its checksum, and checked at start.
ARTIFACT_SUFFIXES = (".pt", ".npy", ".safetensors", ".json")


class ArtifactError(ValueError):
    """An artifact that is there but cannot be read; the message names it, and says how to rebuild it."""


# The one repair of every damaged artifact (plan.repair): the message of each says so.
REPAIR = "to rebuild it and rerun the jobs that read it, add --config repair=True to the snakemake command"


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
        if path.suffix in ARTIFACT_SUFFIXES:
            write_checksum(tmp, path)
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
        for file in [f for f in tmp.rglob("*") if f.suffix in ARTIFACT_SUFFIXES and not f.name.startswith(".")]:
            write_checksum(file, file)  # beside each file: the folder moves as a whole
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


def checksum_file(path: str | os.PathLike) -> Path:
    return Path(path).with_name(f".{Path(path).name}.sha256")


def file_digest(path: Path) -> str:
    """SHA-256 of a file, read in 16 MB blocks."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(1 << 24):
            digest.update(block)
    return digest.hexdigest()


def write_checksum(content: Path, path: Path) -> None:
    """`path`'s checksum file, for the bytes now in `content` (its temporary, or itself)."""
    line = f"{file_digest(content)} {content.stat().st_size}\n"
    fd, tmp = tempfile.mkstemp(prefix=f"{checksum_file(path).name}.", suffix=".tmp", dir=path.parent)
    with os.fdopen(fd, "w") as f:
        f.write(line)
    os.chmod(tmp, 0o666 & ~UMASK)
    os.replace(tmp, checksum_file(path))


def _recorded(path: Path) -> tuple[str, int] | None:
    """The checksum and size recorded for `path`; None for a file written without (before checksums
    were kept, or not by the workflow: a user's weights)."""
    try:
        digest, size = checksum_file(path).read_text().split()
        return digest, int(size)
    except (OSError, ValueError):
        return None


def missing_members(folder: str | os.PathLike) -> list[Path]:
    """The files a folder written by `atomic_dir` held, by the checksums it still holds, that are gone."""
    members = (sidecar.with_name(sidecar.name[1:-len(".sha256")]) for sidecar in Path(folder).glob(".*.sha256"))
    return sorted(member for member in members if not member.exists())


def verify(path: str | os.PathLike) -> None:
    """Stop if `path`'s content differs from its recorded checksum (a flipped byte, not only a cut)."""
    recorded = _recorded(Path(path))
    if recorded and file_digest(Path(path)) != recorded[0]:
        raise ArtifactError(f"{path}: its content does not match its checksum ({checksum_file(path).name}); {REPAIR}")


def load_json(path: str | os.PathLike) -> Any:
    """A JSON artifact, verified against its checksum."""
    verify(path)
    return json.loads(Path(path).read_text())


def sweep_temporaries(folder: str | os.PathLike) -> list[Path]:
    """Remove the temporaries that killed jobs left under `folder`; returns them. Only safe while no
    job is writing there."""
    removed = []
    for parent, folders, files in os.walk(folder):
        for name in [n for n in folders if TEMP_FOLDER.fullmatch(n)]:
            folders.remove(name)  # not walked into: it goes as a whole
            shutil.rmtree(Path(parent, name))
            removed.append(Path(parent, name))
        for name in filter(TEMP_FILE.fullmatch, files):
            Path(parent, name).unlink()
            removed.append(Path(parent, name))
    return sorted(removed)


def save_torch(obj: Any, path: str | os.PathLike) -> None:
    # Saved to a file object, the archive's root folder is "archive", not the temporary's random
    # name: the same content gives the same bytes.
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        try:
            torch.save(obj, f)
        except RuntimeError as error:  # torch reports a failed write, a full disk too, as a RuntimeError
            if (cause := _os_error(error)) is None:
                raise
            raise cause from None  # the OSError behind it, for atomic_path to name


def _os_error(error: BaseException | None) -> OSError | None:
    while error is not None and not isinstance(error, OSError):
        error = error.__cause__ or error.__context__
    return error


def load_torch(path: str | os.PathLike) -> Any:
    with open(path, "rb") as f:  # a missing file fails here, named
        verify(path)
        try:
            return torch.load(f, map_location="cpu", weights_only=False)
        except Exception as error:  # torch reports a cut file as EOFError, RuntimeError or OSError (EINVAL)
            if _whole_zip(f):
                raise  # the file is sound (it is torch.save's zip archive): the fault lies elsewhere
            raise ArtifactError(f"{path} is truncated or corrupt (no complete torch archive); "
                                f"{REPAIR}") from error


def damaged_artifacts(folder: str | os.PathLike, content: bool = False) -> list[Path]:
    """The artifacts under `folder` that a reader would fail on: torch archives that are no complete
    zip (a truncated copy, say), data shards and safetensors files shorter or longer than their
    header says, JSON records that do not parse, files of another size than their checksum records.
    A cheap look (an archive's central directory, a header), not a read of the data; one walk of
    the folder, past the temporaries of killed jobs. `content`: also every file's checksum (a scrub,
    which reads everything)."""
    whole = {".pt": _zip_ends, ".npy": whole_npy, ".safetensors": whole_safetensors, ".json": whole_json}

    def sound(path: Path) -> bool:
        recorded = _recorded(path)
        if recorded and (path.stat().st_size != recorded[1] or content and file_digest(path) != recorded[0]):
            return False
        return whole[path.suffix](path)

    damaged = []
    for parent, folders, files in os.walk(folder):
        folders[:] = [name for name in folders if not TEMP_FOLDER.fullmatch(name)]
        damaged += [Path(parent, name) for name in files
                    if Path(name).suffix in whole and not name.startswith(".") and not sound(Path(parent, name))]
    return sorted(damaged)


def _zip_ends(path: Path) -> bool:
    try:
        with zipfile.ZipFile(path):
            return True
    except (zipfile.BadZipFile, OSError):
        return False


def whole_npy(path: str | os.PathLike) -> bool:
    """Whether a .npy file holds exactly the bytes its header announces."""
    import numpy as np

    try:
        with open(path, "rb") as f:
            read_header = {(1, 0): np.lib.format.read_array_header_1_0}.get(np.lib.format.read_magic(f),
                                                                           np.lib.format.read_array_header_2_0)
            shape, _, dtype = read_header(f)
            return os.fstat(f.fileno()).st_size == f.tell() + int(np.prod(shape)) * dtype.itemsize
    except (OSError, ValueError):
        return False


def whole_safetensors(path: str | os.PathLike) -> bool:
    """Whether a safetensors file holds its header and every tensor the header places."""
    try:
        with open(path, "rb") as f:
            size = int.from_bytes(f.read(8), "little")
            header = json.loads(f.read(size))
            end = max((t["data_offsets"][1] for k, t in header.items() if k != "__metadata__"), default=0)
            return os.fstat(f.fileno()).st_size == 8 + size + end
    except (OSError, ValueError, KeyError, TypeError, IndexError):
        return False


def whole_json(path: str | os.PathLike) -> bool:
    """Whether a JSON record parses (a cut one does not)."""
    try:
        json.loads(Path(path).read_text())
        return True
    except (OSError, ValueError):
        return False


def _whole_zip(f) -> bool:
    """Whether a file is a complete zip archive whose members match their checksums."""
    try:
        f.seek(0)
        return zipfile.ZipFile(f).testzip() is None
    except Exception:  # whatever stops zipfile reading it
        return False


def save_json(obj: Any, path: str | os.PathLike) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(obj, indent=2, sort_keys=True) + "\n")


def save_text(text: str, path: str | os.PathLike) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text)


def job_environment() -> dict:
    """Where a job ran, for its run record: the host, and the SLURM job id under a SLURM executor."""
    return {"host": socket.gethostname(), "slurm_job_id": os.environ.get("SLURM_JOB_ID")}


PRECISIONS = ("fp32", "tf32", "bf16")


def autocast(device: torch.device, precision: str):
    """bf16 autocast on CUDA when asked (the losses are computed in float32 by the diffusion code);
    float32 otherwise (with TF32 where `pick_device` allowed it), and always on the CPU."""
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {PRECISIONS}, got {precision!r}")
    return torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda" and precision == "bf16")


def compiled(fn):
    """`torch.compile(fn)` for fixed shapes. Inductor falls back to torch's own random ops, so the
    DiT's label dropout draws exactly what it draws uncompiled (resumable from the same RNG state)."""
    import torch._inductor.config

    torch._inductor.config.fallback_random = True
    return torch.compile(fn, dynamic=False)


def pick_device(requested: str, tf32: bool) -> torch.device:
    """`auto` takes CUDA when present, else the CPU. `tf32`: float32 matmuls and convolutions may use
    TF32 on CUDA, as the reference's DiT scripts set it (MD train_dit.py L6-8, sample.py L7-8);
    False leaves PyTorch's defaults (TF32 convolutions only), as the reference's evaluator does
    (MD train.py sets no TF32 flag). Every job is a fresh process, so the choice is per job."""
    if requested == "auto":
        requested = "cuda" if torch.cuda.is_available() else "cpu"
    if requested == "cuda" and tf32:
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

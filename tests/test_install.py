"""The package from a plain (non-editable) `pip install .`: everything it reads at run time ships with it.

A fresh venv gets this interpreter's installed dependencies through a .pth file that points at a folder of
links to the current site-packages, less this package (its editable finder and its metadata), then
`pip install --no-deps --no-build-isolation` of a copy of the sources (non-editable, offline). The
workflow files alone (Snakefile, workflow/, config.yaml, models/, and data/: the class lists that presets and
figures read) are copied to a folder away from the repository,
so the only minimaxdd importable there is the installed one, and a dry run must plan the jobs.
"""

import os
import re
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def _is_this_package(name: str) -> bool:
    lowered = name.lower()
    return (lowered == "minimaxdd" or lowered.startswith(("minimaxdd-", "minimaxdd.", "__editable__.minimaxdd",
                                                          "__editable___minimaxdd")))


def _env() -> dict:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV")}
    return {**env, "PIP_NO_INDEX": "1", "PIP_DISABLE_PIP_VERSION_CHECK": "1", "PYTHONNOUSERSITE": "1"}


def _run(args, cwd: Path, timeout: int = 300) -> subprocess.CompletedProcess:
    result = subprocess.run([str(a) for a in args], cwd=cwd, env=_env(), capture_output=True, text=True,
                            timeout=timeout)
    assert result.returncode == 0, (f"{' '.join(map(str, args))} failed ({result.returncode}):\n"
                                    f"{result.stdout[-3000:]}\n{result.stderr[-3000:]}")
    return result


def test_a_plain_install_runs_the_workflow_away_from_the_sources(tmp_path):
    # The current environment's packages, less this one, as links in a folder the new venv's .pth names.
    # (A .pth line only adds its folder to sys.path; .pth files inside it, the editable finder's among
    # them, are not run.)
    current = Path(sysconfig.get_paths()["purelib"])
    deps = tmp_path / "deps"
    deps.mkdir()
    for entry in current.iterdir():
        if not _is_this_package(entry.name) and entry.suffix != ".pth":
            (deps / entry.name).symlink_to(entry)

    venv = tmp_path / "venv"
    _run([sys.executable, "-m", "venv", "--without-pip", venv], cwd=tmp_path)
    python = venv / "bin" / "python"
    site = Path(_run([python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                     cwd=tmp_path).stdout.strip())
    (site / "_current_deps.pth").write_text(f"{deps}\n")
    _run([python, "-c", "import sys; import importlib.util as u; sys.exit(u.find_spec('minimaxdd') is not None)"],
         cwd=tmp_path)  # nothing of the sources or the editable install is visible yet

    # Install from a copy of the sources: the build writes build/ and *.egg-info next to them.
    source = tmp_path / "source"
    source.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(REPO / name, source / name)
    shutil.copytree(REPO / "src", source / "src", ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
    _run([python, "-m", "pip", "install", "--quiet", "--no-deps", "--no-build-isolation", "."], cwd=source)
    shutil.rmtree(source)  # what the workflow finds must be the installed copy

    workdir = tmp_path / "run"
    workdir.mkdir()
    shutil.copy2(REPO / "Snakefile", workdir / "Snakefile")
    shutil.copy2(REPO / "config.yaml", workdir / "config.yaml")
    shutil.copytree(REPO / "workflow", workdir / "workflow", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copytree(REPO / "data", workdir / "data")
    shutil.copytree(REPO / "models", workdir / "models")  # the default's pretrained tiny VAE and DiT

    where = _run([python, "-c", "import minimaxdd; print(minimaxdd.__file__)"], cwd=workdir).stdout.strip()
    assert Path(where).resolve().is_relative_to(site.resolve()), where

    result = _run([python, "-m", "snakemake", "-n", "--cores", "1"], cwd=workdir)
    out = result.stdout + result.stderr
    assert "This was a dry-run" in out, out[-3000:]
    jobs = dict(re.findall(r"^(\w+)\s+(\d+)$", out.split("Job stats:")[-1], flags=re.MULTILINE))
    assert int(jobs.get("all", 0)) == 1 and int(jobs.get("total", 0)) > 1, out[-3000:]

"""Rebuild the pretrained tiny VAE and DiT that a config starts from (the embedded default's
models/digits/): the workflow's own rules base_vae and base_dit train them from the config's
`base_models.tiny_*` settings, as if `base_models.vae` and `.dit` were null, and the two folders
then replace those that `base_models.vae` and `.dit` name.

    python -m minimaxdd.base_models [--directory WORKDIR] [--cores N] [--snakefile F]   # make base-models
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import yaml

from . import plan
from .io import atomic_dir


def rebuild(workdir: Path, cores: str, snakefile: Path) -> dict[str, Path]:
    """Train both models in `workdir` (its config.yaml) and copy them where the config points;
    returns {"vae": folder, "dit": folder}."""
    config = plan.load_config(plan.read_config({}, [], workdir / "config.yaml"))
    targets = {key: config["base_models"][key] for key in ("vae", "dit")}
    if None in targets.values():
        raise plan.ConfigError("base_models.vae and base_models.dit: name the folders to rebuild (a null one has none)")
    base = f"{plan.RESULTS}/{config['experiment']}/base"
    # The same config with both keys null, as a whole config file (a --configfile is never merged).
    untrained = {**config, "base_models": {**config["base_models"], "vae": None, "dit": None}}
    with tempfile.NamedTemporaryFile("w", suffix=".yaml", dir=workdir) as file:
        yaml.safe_dump(untrained, file)
        file.flush()
        subprocess.run([sys.executable, "-m", "snakemake", "--snakefile", str(snakefile.resolve()), "--directory",
                        str(workdir), "--cores", cores, "--configfile", file.name, "--", f"{base}/vae", f"{base}/dit"],
                       check=True)
    folders = {}
    for key, target in targets.items():
        folders[key] = workdir / target
        with atomic_dir(folders[key]) as tmp:
            shutil.copytree(workdir / base / key, tmp, dirs_exist_ok=True,
                            ignore=shutil.ignore_patterns(".snakemake_timestamp"))  # Snakemake's, not the model's
    return folders


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--directory", type=Path, default=Path("."), help="the workdir holding config.yaml")
    parser.add_argument("--cores", default="all")
    parser.add_argument("--snakefile", type=Path, default=Path("Snakefile"), help="the workflow (default: %(default)s)")
    args = parser.parse_args(argv)
    try:
        folders = rebuild(args.directory, args.cores, args.snakefile)
    except plan.ConfigError as error:
        sys.exit(f"error: {error}")
    except subprocess.CalledProcessError as error:
        sys.exit(f"error: the training jobs failed (exit {error.returncode}); Snakemake's messages are above")
    print("rebuilt " + " and ".join(str(folder) for folder in folders.values()))


if __name__ == "__main__":
    main()

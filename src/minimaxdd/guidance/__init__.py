"""Training-free guidance methods as plug-ins: the registry of methods and the guide the sampler calls.

A guidance method is one module whose `METHOD` (a `GuidanceMethod`) declares its method names
(`<name>` samples the pretrained DiT, `<name>_<fine-tuned method>` that method's model, sharing its
fine-tuning), its label in the tables, its config section, the artifacts its sets read, its checks
at the workflow's start, its toy shrink, its cost and the `Guide` the sampler calls. MGD3
(guidance/mgd3.py) and IGD (guidance/igd.py) are built in; another plugs in as a Python file named
in the config's `plugins` list, whose `METHOD` also carries its section's schema.

The guide: `generate.generate_set` and `diffusion.sample_latents` call it at four points and name no
method: `batches` (which images go in a batch, and in what order), `begin_batch` (before a batch is
sampled), `acts_at` (whether it steers a chain index) with `mean_shift` (how far it moves the DDPM
step's mean, given the predicted clean latent) and `end_batch` (what it keeps of a finished batch).
`Guide` itself steers nothing: plain sampling.

No torch here: the plan (the Snakemake main process) reads the registry, and a built-in method's
module is imported only when a configured method name uses it.
"""

from __future__ import annotations

import importlib
import importlib.util
from pathlib import Path

BUILT_IN = {"mgd3": "minimaxdd.guidance.mgd3", "igd": "minimaxdd.guidance.igd"}
_PLUGINS: dict[str, tuple[str, "GuidanceMethod"]] = {}  # name -> (its file, its method)


Job = tuple[int, int]  # (class index, image index within the class)


class Guide:
    """No guidance: class-major batches of `batch_size` images, the sampler's mean left as it is."""

    def batches(self, classes: list[int], ipc: int, batch_size: int) -> list[list[Job]]:
        jobs = [(c, i) for c in classes for i in range(ipc)]
        return [jobs[start:start + batch_size] for start in range(0, len(jobs), batch_size)]

    def begin_batch(self, batch: list[Job]) -> None:
        """The images of the next batch, in its order."""

    def acts_at(self, index: int) -> bool:
        """Whether the guide moves the step from chain index `index`."""
        return False

    def mean_shift(self, x0: torch.Tensor, std: torch.Tensor, dx0_dxt: torch.Tensor) -> torch.Tensor:
        """The shift of the step's mean, given the predicted clean latents `x0`, the step's standard
        deviation `std` and dx0/dx_t = 1 / sqrt(abar_t) (the noise prediction held fixed)."""
        return x0.new_zeros(x0.shape)

    def end_batch(self, latents: torch.Tensor) -> None:
        """The batch's final latents, in the order of `begin_batch`."""


NO_GUIDE = Guide()


class GuidanceMethod:
    """A training-free guidance method: what the workflow asks of it, with the answers of a method
    that needs nothing but its config section. `name` is its method names' prefix and its config
    section (`schema`: that section's JSON schema, with defaults, for a plug-in; the built-in
    sections are in config.schema.yaml). `benchmark`: the figure of benchmarks/ its generation's
    cost scales from in estimate.py (None: unguided generation's)."""

    name: str
    label: str
    schema: dict | None = None
    benchmark: str | None = None

    def settings(self, section: dict, finetuned: bool) -> dict:
        """Its settings for the sets of one method name (in rule generate's params, so they are
        the sets' rerun triggers), from its config section; `finetuned`: it samples a fine-tuned
        model rather than the pretrained DiT."""
        return dict(section)

    def inputs(self, paths, ipc: int) -> list[str]:
        """The artifacts (paths.Paths) its sets of `ipc` images a class read."""
        return []

    def check(self, settings: dict, steps: int) -> None:
        """Raise ValueError when a method name's settings cannot run with its `steps` denoising steps."""

    def check_data(self, config: dict, counts: dict[str, int], names: list[str]) -> None:
        """Raise ValueError, naming the config key, when the data (training images per class)
        cannot serve its methods `names`."""

    def disk_bytes(self, config: dict, classes: int) -> int:
        """Bytes its own stages write for a dataset of `classes` classes."""
        return 0

    def shrink(self, section: dict, preset: dict, steps: int, epochs: int) -> None:
        """Its config section, in place, for a toy run of a preset (toy.py): `steps` denoising steps
        for the preset's generate.steps, `epochs` epochs a training."""

    def build_guide(self, settings: dict, inputs: list[str], vae, device) -> Guide:
        """The guide of one generation job (torch from here on)."""
        raise NotImplementedError


def names() -> list[str]:
    """Every guidance method's name: the built-in ones, then the plug-ins loaded."""
    return [*BUILT_IN, *_PLUGINS]


def plugins() -> list[GuidanceMethod]:
    """The guidance methods loaded from plug-in files."""
    return [found for _, found in _PLUGINS.values()]


def method(name: str) -> GuidanceMethod:
    if name in _PLUGINS:
        return _PLUGINS[name][1]
    return importlib.import_module(BUILT_IN[name]).METHOD


def load_plugins(files: list[str]) -> None:
    """Register the guidance method (`METHOD`) of each Python file (the config's `plugins`), so that
    its name is a method of every job of the run. Raises ValueError naming the file."""
    for file in files:
        path = Path(file)
        if not path.is_file():
            raise ValueError(f"plugins: {file} is not a file")
        if any(Path(known).resolve() == path.resolve() for known, _ in _PLUGINS.values()):
            continue
        spec = importlib.util.spec_from_file_location(f"minimaxdd_plugin_{path.stem}", path)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        found = getattr(module, "METHOD", None)
        if not isinstance(found, GuidanceMethod):
            raise ValueError(f"plugins: {file} defines no METHOD, a minimaxdd.guidance.GuidanceMethod")
        if found.name in names():
            raise ValueError(f"plugins: {file} names its method {found.name!r}, which is taken")
        _PLUGINS[found.name] = (file, found)

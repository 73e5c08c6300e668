"""Where every artifact of a job grid lives, and the input lists the rules take from it.

The one place for the layout of results/<experiment>. Each kind of artifact has one function that
builds its path from its fields; a rule passes wildcards ("{method}", "{ipc}") as the fields for
its output pattern, the input functions and the tables pass values, and `run_of` reads a record's
fields back with the same pattern. No torch, no Snakemake here.
"""

from __future__ import annotations

import re
from pathlib import Path

from . import guidance, methods
from .plan import Grid, chunk_classes


class Paths:
    """The files of one job grid: sets, records, weights, and everything `snakemake` builds."""

    def __init__(self, grid: Grid):
        self.grid = grid

    # -- each kind of artifact, from its fields -------------------------------------------------
    def data_index(self, split: str) -> str:
        return f"{self.grid.exp}/data/{split}/index.json"

    def base_model(self, name: str) -> str:
        """A tiny base model trained here (`vae`, `dit`)."""
        return f"{self.grid.exp}/base/{name}"

    def latent_file(self, chunk) -> str:
        return f"{self.grid.exp}/latents/train/{chunk}.pt"

    def finetune_file(self, method: str, phase, name: str) -> str:
        return f"{self.grid.exp}/finetune/{method}/phase{phase}/{name}"

    def modes_file(self, ipc) -> str:
        """MGD3's class modes for sets of `ipc` images a class."""
        return f"{self.grid.exp}/modes/ipc{ipc}.pt"

    def set_file(self, method: str, ipc, name: str) -> str:
        """A file of a surrogate set: `pack.pt`, `images` (its PNG folder), `generation.json`."""
        return f"{self.grid.exp}/sets/{method}/ipc{ipc}/{name}"

    def set_chunk(self, method: str, ipc, chunk, suffix: str) -> str:
        """A file of one class chunk of a generated set: `.pt` its pack, `.json` its run record."""
        return self.set_file(method, ipc, f"chunks/{chunk}{suffix}")

    def run_record(self, protocol: str, method: str, ipc, arch: str, seed) -> str:
        """A validation run's record; `protocol` its folder: validate (hard label), validate_soft,
        validate_noaug."""
        return f"{self.grid.exp}/{protocol}/{method}/ipc{ipc}/{arch}/seed{seed}.json"

    def full_record(self, arch: str, seed) -> str:
        """A run on the whole training split (method `full`)."""
        return f"{self.grid.exp}/validate/full/{arch}/seed{seed}.json"

    def analysis_record(self, method: str, ipc) -> str:
        return f"{self.grid.exp}/analysis/{method}/ipc{ipc}.json"

    def feature_file(self, name: str) -> str:
        """The feature network (`resnetap10.pt`) and its embedding of the training split (`train_features.pt`)."""
        return f"{self.grid.exp}/features/{name}"

    def table(self, name: str) -> str:
        return f"{self.grid.exp}/tables/{name}"

    def figure(self, name: str) -> str:
        return f"{self.grid.exp}/figures/{name}"

    def log(self, name: str) -> str:
        return f"{self.grid.exp}/logs/{name}.log"

    def run_of(self, record: str) -> tuple[str, int, str]:
        """(method, IPC, net) of a validation record of any protocol (IPC 0: the full split), read
        with the patterns that name them."""
        full = _fields(self.full_record("{arch}", "{seed}"), record)
        if full:
            return "full", 0, full["arch"]
        run = _fields(self.run_record("{protocol}", "{method}", "{ipc}", "{arch}", "{seed}"), record)
        if not run:
            raise ValueError(f"{record} is no validation record of {self.grid.exp}")
        return run["method"], int(run["ipc"]), run["arch"]

    # -- the files a grid has, and what the rules read -------------------------------------------
    def vae_path(self) -> str:
        return self.grid.config["base_models"]["vae"] or self.base_model("vae")

    def dit_path(self) -> str:
        return self.grid.config["base_models"]["dit"] or self.base_model("dit")

    def set_pack(self, method: str, ipc) -> str:
        return self.set_file(method, ipc, "pack.pt")

    def record(self, method: str, ipc, arch: str, seed) -> str:
        return self.run_record("validate", method, ipc, arch, seed)

    def full_records(self) -> list[str]:
        grid = self.grid
        return [self.full_record(arch, seed) for arch in grid.archs for seed in grid.seeds]

    def validation_records(self) -> list[str]:
        records = [self.record(m, ipc, a, s) for ipc in self.grid.ipcs for m in self.grid.methods_at(ipc)
                   for a in self.grid.archs for s in self.grid.seeds]
        return records + (self.full_records() if "full" in self.grid.methods else [])

    def soft_label_records(self) -> list[str]:
        return [self.run_record("validate_soft", m, ipc, a, s) for ipc in self.grid.ipcs
                for m in self.grid.methods_at(ipc) for a in self.grid.soft_archs for s in self.grid.seeds]

    def no_augment_records(self) -> list[str]:
        """The records of the hard-label protocol without augmentation (validate.protocols
        no_augment), for DD-Ranking's ARS."""
        return [self.run_record("validate_noaug", m, ipc, a, s) for ipc in self.grid.ipcs
                for m in self.grid.methods_at(ipc) for a in self.grid.archs for s in self.grid.seeds]

    def analysis_records(self) -> list[str]:
        grid = self.grid
        return [self.analysis_record(m, ipc) for ipc in grid.ipcs for m in grid.methods_at(ipc)]

    def teacher(self) -> str:
        """The soft-label teacher: a weights file, or the feature network trained here."""
        return self.grid.config["soft_label"]["teacher"] or self.feature_file("resnetap10.pt")

    def study_records(self, study: dict) -> list[str]:
        return [self.record(point, ipc, arch, seed) for point in self.grid.study_points(study)
                for ipc in study.get("ipcs", self.grid.ipcs) for arch in study.get("archs", self.grid.archs)
                for seed in self.grid.seeds]

    def study_timings(self, study: dict) -> list[str]:
        """Generation time per image of every study point (Table 8 reports it for denoising steps)."""
        return [self.set_file(point, ipc, "generation.json") for point in self.grid.study_points(study)
                for ipc in study.get("ipcs", self.grid.ipcs)]

    def table5_records(self) -> list[str]:
        return [self.record(m, ipc, a, s) for m in self.grid.table5_methods for ipc in self.grid.ipcs
                for a in self.grid.archs for s in self.grid.seeds]

    def table9_records(self) -> list[str]:
        return self.full_records() + [self.record(m, ipc, a, s) for m in self.grid.expanded
                                      for ipc in self.grid.config["expansion"]["ipcs"] for a in self.grid.archs
                                      for s in self.grid.seeds]

    def latents(self, classes: list[int] | None = None) -> list[str]:
        """The encode jobs' latent files holding a class of `classes` (every file when None)."""
        wanted = None if classes is None else set(classes)
        return [self.latent_file(chunk) for chunk in self.grid.latent_chunks
                if wanted is None or chunk_classes(chunk) is None or wanted & set(chunk_classes(chunk))]

    def phase_latents(self, wildcards) -> list[str]:
        """The latent files a fine-tuning phase reads: those of its classes."""
        return self.latents(self.grid.phases[int(wildcards.phase)])

    def finetuned_weights(self, method: str) -> list[str]:
        """The Difffit deltas (one per class phase) a generated method samples with; none for `dit`."""
        if methods.model_of(methods.split(method)[0]) == "dit":
            return []
        name = methods.finetune_name(method)
        return [self.finetune_file(name, phase, "weights.safetensors") for phase in range(len(self.grid.phases))]

    def guide_inputs(self, wildcards) -> list[str]:
        """The artifacts a guided method's set reads (its guidance method's `inputs`); none for the others."""
        guide = methods.guidance_of(wildcards.method)
        return guidance.method(guide).inputs(self, int(wildcards.ipc)) if guide else []

    @property
    def igd_surrogate(self) -> str:
        return f"{self.grid.exp}/igd/surrogate.pt"

    @property
    def igd_gradients(self) -> str:
        return f"{self.grid.exp}/igd/class_gradients"

    def rebuilt_output(self, path: Path) -> str | None:
        """The output of the job that wrote `path`, which rebuilds it: a folder output holding it (a
        base model, a set's PNGs, IGD's class gradients), for a file of a data split its index
        (prepare's output; it decodes again only the classes whose shard is gone), else the path.
        None for a job's scratch (a resume checkpoint, IGD's `.partial` and `.trajectory` folders):
        without it, the job starts over."""
        path = Path(path)
        if path.name.endswith(".resume.pt") or any(p.suffix in (".partial", ".trajectory") for p in path.parents):
            return None
        for folder in (self.base_model("{name}"), self.set_file("{method}", "{ipc}", "images"), self.igd_gradients):
            for parent in path.parents:
                if _fields(folder, str(parent)) is not None:
                    return str(parent)
        split = _fields(f"{self.grid.exp}/data/{{split}}/{{name}}", str(path))
        return self.data_index(split["split"]) if split else str(path)

    def generation_weights(self, wildcards) -> list[str]:
        """The deltas one generation job needs: a class chunk needs only its phases'."""
        weights = self.finetuned_weights(wildcards.method)
        if weights and hasattr(wildcards, "chunk"):
            return [weights[i] for i in self.grid.chunk_phases(wildcards.chunk)]
        return weights

    def final_outputs(self) -> list[str]:
        """Everything `snakemake` builds by default: the tables, the analyses and the figures."""
        table, figure = self.table, self.figure
        hard = "hard_label" in self.grid.protocols
        outputs = [table(name) for name in ("table1.csv", "table1.md", "accuracy_vs_ipc.png")] if hard else []
        if "soft_label" in self.grid.protocols and self.grid.subset_methods:
            outputs += [table("table4.csv"), table("table4.md")]
        if self.grid.subset_methods:
            analyses = self.grid.config["analysis"]["enabled"]
            outputs += [table("table2.csv"), table("table10.csv")] if analyses else []
            kinds = [kind for kind, on in (("tsne", analyses), ("samples", True), ("validation_curves", hard)) if on]
            outputs += [figure(f"{kind}_ipc{ipc}.png") for kind in kinds for ipc in self.grid.ipcs
                        if self.grid.methods_at(ipc)]
        if self.grid.finetuned:
            outputs.append(figure("finetune_losses.png"))
        if not hard:  # the scores, the ablations, the expansion and the studies are hard-label tables
            return outputs
        if "random" in self.grid.methods and len(self.grid.subset_methods) > 1:
            outputs += [table("scores.csv"), table("leaderboard.csv")]
        if any(m in self.grid.config["variants"] for m in self.grid.methods):
            outputs.append(table("table5.csv"))
        if self.grid.expanded:
            outputs.append(table("table9.csv"))
        return outputs + [table(f"study_{name}.csv") for name in self.grid.studies]

    def validation_curves_records(self, wildcards) -> list[str]:
        return [self.record(m, wildcards.ipc, a, s) for m in self.grid.methods_at(wildcards.ipc) for a in self.grid.archs
                for s in self.grid.seeds]

    def group_records(self, wildcards) -> list[str]:
        """The records one validate_group job writes: every seed of a (method, IPC, net)."""
        return [self.record(wildcards.method, wildcards.ipc, wildcards.arch, seed) for seed in self.grid.seeds]

    def external_folder(self, wildcards) -> str:
        return self.grid.external[wildcards.method][int(wildcards.ipc)]


def _fields(pattern: str, path: str) -> dict[str, str] | None:
    """The {field} values of `path` under `pattern` (a path built with "{field}" placeholders), or None."""
    pieces = re.split(r"\{(\w+)\}", pattern)  # literal, field, literal, field, ..., literal
    regex = "".join(re.escape(piece) if i % 2 == 0 else f"(?P<{piece}>[^/]+)" for i, piece in enumerate(pieces))
    match = re.fullmatch(regex, path)
    return match.groupdict() if match else None

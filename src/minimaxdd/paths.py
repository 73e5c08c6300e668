"""Where every artifact of a job grid lives, and the input lists the rules take from it.

One place for the layout of results/<experiment>: the rules name their inputs and outputs through
these functions (and common.smk's patterns), the tables find their records through them.
No torch, no Snakemake here.
"""

from __future__ import annotations

from . import guidance, methods
from .plan import Grid, chunk_classes


class Paths:
    """The files of one job grid: sets, records, weights, and everything `snakemake` builds."""

    def __init__(self, grid: Grid):
        self.grid = grid

    def vae_path(self) -> str:
        return self.grid.config["base_models"]["vae"] or f"{self.grid.exp}/base/vae"

    def dit_path(self) -> str:
        return self.grid.config["base_models"]["dit"] or f"{self.grid.exp}/base/dit"

    def set_pack(self, method: str, ipc) -> str:
        return f"{self.grid.exp}/sets/{method}/ipc{ipc}/pack.pt"

    def record(self, method: str, ipc, arch: str, seed) -> str:
        return f"{self.grid.exp}/validate/{method}/ipc{ipc}/{arch}/seed{seed}.json"

    def full_records(self) -> list[str]:
        grid = self.grid
        return [f"{grid.exp}/validate/full/{arch}/seed{seed}.json" for arch in grid.archs for seed in grid.seeds]

    def validation_records(self) -> list[str]:
        records = [self.record(m, ipc, a, s) for ipc in self.grid.ipcs for m in self.grid.methods_at(ipc)
                   for a in self.grid.archs for s in self.grid.seeds]
        return records + (self.full_records() if "full" in self.grid.methods else [])

    def soft_label_records(self) -> list[str]:
        return [f"{self.grid.exp}/validate_soft/{m}/ipc{ipc}/{a}/seed{s}.json" for ipc in self.grid.ipcs
                for m in self.grid.methods_at(ipc) for a in self.grid.soft_archs for s in self.grid.seeds]

    def no_augment_records(self) -> list[str]:
        """The records of the hard-label protocol without augmentation (validate.protocols
        no_augment), for DD-Ranking's ARS."""
        return [f"{self.grid.exp}/validate_noaug/{m}/ipc{ipc}/{a}/seed{s}.json" for ipc in self.grid.ipcs
                for m in self.grid.methods_at(ipc) for a in self.grid.archs for s in self.grid.seeds]

    def analysis_records(self) -> list[str]:
        grid = self.grid
        return [f"{grid.exp}/analysis/{m}/ipc{ipc}.json" for ipc in grid.ipcs for m in grid.methods_at(ipc)]

    def teacher(self) -> str:
        """The soft-label teacher: a weights file, or the feature network trained here."""
        return self.grid.config["soft_label"]["teacher"] or f"{self.grid.exp}/features/resnetap10.pt"

    def study_records(self, study: dict) -> list[str]:
        return [self.record(point, ipc, arch, seed) for point in self.grid.study_points(study)
                for ipc in study.get("ipcs", self.grid.ipcs) for arch in study.get("archs", self.grid.archs)
                for seed in self.grid.seeds]

    def study_timings(self, study: dict) -> list[str]:
        """Generation time per image of every study point (Table 8 reports it for denoising steps)."""
        return [f"{self.grid.exp}/sets/{point}/ipc{ipc}/generation.json" for point in self.grid.study_points(study)
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
        return [f"{self.grid.exp}/latents/train/{chunk}.pt" for chunk in self.grid.latent_chunks
                if wanted is None or chunk_classes(chunk) is None or wanted & set(chunk_classes(chunk))]

    def phase_latents(self, wildcards) -> list[str]:
        """The latent files a fine-tuning phase reads: those of its classes."""
        return self.latents(self.grid.phases[int(wildcards.phase)])

    def finetuned_weights(self, method: str) -> list[str]:
        """The Difffit deltas (one per class phase) a generated method samples with; none for `dit`."""
        if methods.model_of(methods.split(method)[0]) == "dit":
            return []
        name = methods.finetune_name(method)
        return [f"{self.grid.exp}/finetune/{name}/phase{phase}/weights.safetensors"
                for phase in range(len(self.grid.phases))]

    def guide_inputs(self, wildcards) -> list[str]:
        """The artifacts a guided method's set reads (its guidance method's `inputs`); none for the others."""
        guide = methods.sampler_of(methods.split(wildcards.method)[0])
        return guidance.method(guide).inputs(self, int(wildcards.ipc)) if guide else []

    @property
    def igd_surrogate(self) -> str:
        return f"{self.grid.exp}/igd/surrogate.pt"

    @property
    def igd_gradients(self) -> str:
        return f"{self.grid.exp}/igd/class_gradients"

    def modes_file(self, ipc) -> str:
        return f"{self.grid.exp}/modes/ipc{ipc}.pt"

    def generation_weights(self, wildcards) -> list[str]:
        """The deltas one generation job needs: a class chunk needs only its phases'."""
        weights = self.finetuned_weights(wildcards.method)
        if weights and hasattr(wildcards, "chunk"):
            return [weights[i] for i in self.grid.chunk_phases(wildcards.chunk)]
        return weights

    def final_outputs(self) -> list[str]:
        """Everything `snakemake` builds by default: the tables, the analyses and the figures."""
        tables, figures = f"{self.grid.exp}/tables", f"{self.grid.exp}/figures"
        hard = "hard_label" in self.grid.protocols
        outputs = [f"{tables}/{name}" for name in ("table1.csv", "table1.md", "accuracy_vs_ipc.png")] if hard else []
        if "soft_label" in self.grid.protocols and self.grid.subset_methods:
            outputs += [f"{tables}/table4.csv", f"{tables}/table4.md"]
        if self.grid.subset_methods:
            analyses = self.grid.config["analysis"]["enabled"]
            outputs += [f"{tables}/table2.csv", f"{tables}/table10.csv"] if analyses else []
            kinds = [kind for kind, on in (("tsne", analyses), ("samples", True), ("validation_curves", hard)) if on]
            outputs += [f"{figures}/{kind}_ipc{ipc}.png" for kind in kinds for ipc in self.grid.ipcs
                        if self.grid.methods_at(ipc)]
        if self.grid.finetuned:
            outputs.append(f"{figures}/finetune_losses.png")
        if not hard:  # the scores, the ablations, the expansion and the studies are hard-label tables
            return outputs
        if "random" in self.grid.methods and len(self.grid.subset_methods) > 1:
            outputs += [f"{tables}/scores.csv", f"{tables}/leaderboard.csv"]
        if any(m in self.grid.config["variants"] for m in self.grid.methods):
            outputs.append(f"{tables}/table5.csv")
        if self.grid.expanded:
            outputs.append(f"{tables}/table9.csv")
        return outputs + [f"{tables}/study_{name}.csv" for name in self.grid.studies]

    def validation_curves_records(self, wildcards) -> list[str]:
        return [self.record(m, wildcards.ipc, a, s) for m in self.grid.methods_at(wildcards.ipc) for a in self.grid.archs
                for s in self.grid.seeds]

    def group_records(self, wildcards) -> list[str]:
        """The records one validate_group job writes: every seed of a (method, IPC, net)."""
        return [self.record(wildcards.method, wildcards.ipc, wildcards.arch, seed) for seed in self.grid.seeds]

    def external_folder(self, wildcards) -> str:
        return self.grid.external[wildcards.method][int(wildcards.ipc)]

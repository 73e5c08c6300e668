# Paths and input functions shared by the rules. Each job receives only its own slice of the
# config as params, so that changing one setting reruns only the jobs that depend on it.
import re

from minimaxdd import methods as method_names

EXP = f"results/{config['experiment']}"
METHODS = config["methods"]
IPCS = config["ipcs"]
ARCHS = config["validate"]["archs"]
SEEDS = config["validate"]["seeds"]
STUDIES = {study["name"]: study for study in config["studies"]}


def unique(names):
    return list(dict.fromkeys(names))


SUBSET_METHODS = [m for m in METHODS if m != "full"]
EXPANDED = [f"full+{m}" for m in config["expansion"]["methods"]]
STUDY_METHODS = unique(p for study in config["studies"] for p in checks.study_points(config, study))
VALIDATED = unique(SUBSET_METHODS + STUDY_METHODS + EXPANDED)
GENERATED = [m for m in unique(VALIDATED + config["expansion"]["methods"]) if method_names.is_generated(m, config)]
FINETUNE_JOBS = unique(method_names.finetune_name(m) for m in GENERATED if method_names.split(m)[0] != "dit")
FINETUNED = [m for m in METHODS if method_names.criteria(m, config)]
VARIANTS_IN_TABLE = [m for m in METHODS if m in config["variants"]]
TABLE5_METHODS = [m for m in ["difffit", *VARIANTS_IN_TABLE, "minimax"] if m in METHODS]
PHASES = checks.class_phases(config)


def one_of(names):
    """A wildcard constraint matching exactly these names (or nothing)."""
    return "|".join(re.escape(n) for n in names) or "(?!)"


wildcard_constraints:
    ipc=r"\d+",
    seed=r"-?\d+",
    arch=one_of(unique(ARCHS + [a for s in config["studies"] for a in s.get("archs", [])])),


def base_vae():
    return config["base_models"]["vae"] or f"{EXP}/base/vae"


def base_dit():
    return config["base_models"]["dit"] or f"{EXP}/base/dit"


def finetuned_weights(method):
    """The Difffit deltas (one per class phase) a generated method samples with; none for `dit`."""
    if method_names.split(method)[0] == "dit":
        return []
    name = method_names.finetune_name(method)
    return [f"{EXP}/finetune/{name}/phase{phase}/weights.safetensors" for phase in range(len(PHASES))]


def set_pack(method, ipc):
    return f"{EXP}/sets/{method}/ipc{ipc}/pack.pt"


def record(method, ipc, arch, seed):
    return f"{EXP}/validate/{method}/ipc{ipc}/{arch}/seed{seed}.json"


def validation_records():
    records = [record(m, ipc, arch, seed) for m in SUBSET_METHODS for ipc in IPCS for arch in ARCHS for seed in SEEDS]
    if "full" in METHODS:
        records += full_records()
    return records


def full_records():
    return [f"{EXP}/validate/full/{arch}/seed{seed}.json" for arch in ARCHS for seed in SEEDS]


def study_records(study):
    return [
        record(point, ipc, arch, seed)
        for point in checks.study_points(config, study)
        for ipc in study.get("ipcs", IPCS)
        for arch in study.get("archs", ARCHS)
        for seed in SEEDS
    ]


def study_timings(study):
    """Generation time per image of every study point (Table 8 reports it for denoising steps)."""
    return [
        f"{EXP}/sets/{point}/ipc{ipc}/generation.json"
        for point in checks.study_points(config, study)
        for ipc in study.get("ipcs", IPCS)
    ]


def final_outputs():
    """Everything `snakemake` builds by default: the tables, the analyses and the figures."""
    outputs = [f"{EXP}/tables/{name}" for name in ("table1.csv", "table1.md", "accuracy_vs_ipc.png")]
    if SUBSET_METHODS:
        outputs += [f"{EXP}/tables/{name}" for name in ("table2.csv", "table10.csv")]
        outputs += [f"{EXP}/figures/{kind}_ipc{ipc}.png" for kind in ("tsne", "samples") for ipc in IPCS]
    if FINETUNED:
        outputs.append(f"{EXP}/figures/finetune_losses.png")
    if VARIANTS_IN_TABLE:
        outputs.append(f"{EXP}/tables/table5.csv")
    if EXPANDED:
        outputs.append(f"{EXP}/tables/table9.csv")
    outputs += [f"{EXP}/tables/study_{name}.csv" for name in STUDIES]
    return outputs


def generation_chunks():
    """Class-index ranges `first-last` (inclusive) of the jobs that generate one set, from
    `generate.classes_per_job`; [] when one job generates every class (the default)."""
    per_job = config["generate"]["classes_per_job"]
    if per_job is None:
        return []
    from minimaxdd.data import resolve_classes

    count = len(resolve_classes(config["dataset"])[0])
    return [f"{start}-{min(start + per_job, count) - 1}" for start in range(0, count, per_job)]


def chunk_file(method, ipc, chunk, suffix):
    """A file of one class chunk of a generated set: `.pt` its pack, `.json` its run record."""
    return f"{EXP}/sets/{method}/ipc{ipc}/chunks/{chunk}{suffix}"

# Paths and input functions shared by the rules. Each job receives only its own slice of the
# config as params, so that changing one setting reruns only the jobs that depend on it.

EXP = f"results/{config['experiment']}"
METHODS = config["methods"]
IPCS = config["ipcs"]
ARCHS = config["validate"]["archs"]
SEEDS = config["validate"]["seeds"]
GENERATED = [m for m in METHODS if m in checks.GENERATED_METHODS]
SUBSET_METHODS = [m for m in METHODS if m != "full"]

wildcard_constraints:
    ipc=r"\d+",
    seed=r"-?\d+",
    arch="|".join(ARCHS),


def base_vae():
    return config["base_models"]["vae"] or f"{EXP}/base/vae"


def base_dit():
    return config["base_models"]["dit"] or f"{EXP}/base/dit"


def set_pack(method, ipc):
    return f"{EXP}/sets/{method}/ipc{ipc}/pack.pt"


def validation_records():
    records = [
        f"{EXP}/validate/{method}/ipc{ipc}/{arch}/seed{seed}.json"
        for method in SUBSET_METHODS
        for ipc in IPCS
        for arch in ARCHS
        for seed in SEEDS
    ]
    if "full" in METHODS:
        records += [f"{EXP}/validate/full/{arch}/seed{seed}.json" for arch in ARCHS for seed in SEEDS]
    return records


def table_outputs():
    return [f"{EXP}/tables/{name}" for name in ("table1.csv", "table1.md", "accuracy_vs_ipc.png")]

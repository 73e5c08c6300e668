# Input functions shared by the rules. GRID (minimaxdd.plan.Grid) decides the jobs, PATHS
# (minimaxdd.paths) where their files live (every rule's patterns come from it), PARAMS
# (minimaxdd.params) each rule's settings: each job gets only its own slice as params, so that
# changing one setting reruns only the jobs that take it.
import os
import re

# Every core of the machine, which Snakemake caps at --cores (workflow.cores would fail --unlock,
# --summary, --dag ... run without --cores); profiles set the threads on a cluster.
ALL_CORES = os.cpu_count() or 1


def one_of(names):
    """A wildcard constraint matching exactly these names (or nothing)."""
    return "|".join(re.escape(n) for n in names) or "(?!)"


wildcard_constraints:
    ipc=r"\d+",
    seed=r"-?\d+",
    arch=one_of(dict.fromkeys(GRID.archs + [a for s in GRID.studies.values() for a in s.get("archs", [])])),


def set_packs(w):
    """The sets of one IPC that the figures compare."""
    return [PATHS.set_pack(m, w.ipc) for m in GRID.methods_at(w.ipc)]

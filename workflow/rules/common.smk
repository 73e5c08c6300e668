# Paths and input functions shared by the rules. The plan (src/minimaxdd/plan.py) decides the job
# grid and each rule's settings; each job gets only its own slice as params, so that changing one
# setting reruns only the jobs that depend on it.
import os
import re

EXP = PLAN.exp
# Every core of the machine, which Snakemake caps at --cores (workflow.cores would fail --unlock,
# --summary, --dag ... run without --cores); profiles set the threads on a cluster.
ALL_CORES = os.cpu_count() or 1


def one_of(names):
    """A wildcard constraint matching exactly these names (or nothing)."""
    return "|".join(re.escape(n) for n in names) or "(?!)"


wildcard_constraints:
    ipc=r"\d+",
    seed=r"-?\d+",
    arch=one_of(dict.fromkeys(PLAN.archs + [a for s in PLAN.studies.values() for a in s.get("archs", [])])),


def set_packs(w):
    """The sets of one IPC that the figures compare."""
    return [PLAN.set_pack(m, w.ipc) for m in PLAN.methods_at(w.ipc)]


def chunk_file(method, ipc, chunk, suffix):
    """A file of one class chunk of a generated set: `.pt` its pack, `.json` its run record."""
    return f"{EXP}/sets/{method}/ipc{ipc}/chunks/{chunk}{suffix}"

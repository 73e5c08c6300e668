from pathlib import Path

from minimaxdd import stages
from minimaxdd.io import job_context

p = snakemake.params
with job_context(snakemake.log[0], snakemake.threads):
    stages.make_tables(list(snakemake.input.records), str(Path(snakemake.output.csv).parent), p.methods, p.ipcs,
                       p.archs, p.resolution)

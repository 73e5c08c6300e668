from minimaxdd import stages
from minimaxdd.io import job_context

per_class = min(snakemake.params.per_class, int(snakemake.wildcards.ipc))
with job_context(snakemake.log[0], snakemake.threads):
    stages.sample_grid({m: snakemake.input[m] for m in snakemake.params.methods}, snakemake.output[0], per_class)

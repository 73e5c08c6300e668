from minimaxdd import stages
from minimaxdd.io import job_context

with job_context(snakemake.log[0], snakemake.threads):
    stages.select_random(snakemake.input.train, snakemake.output.pack, snakemake.output.images,
                         int(snakemake.wildcards.ipc), snakemake.params.seed)

from minimaxdd import stages
from minimaxdd.io import job_context

with job_context(snakemake.log[0], snakemake.threads):
    stages.expand_set(snakemake.input.train, snakemake.input.set, snakemake.output.pack)

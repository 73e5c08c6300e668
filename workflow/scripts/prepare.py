from minimaxdd import stages
from minimaxdd.io import job_context

with job_context(snakemake.log[0], snakemake.threads):
    stages.prepare(snakemake.params.dataset, snakemake.output.train, snakemake.output.test)

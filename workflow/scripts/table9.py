from minimaxdd import stages
from minimaxdd.io import job_context

with job_context(snakemake.log[0], snakemake.threads):
    stages.table9(list(snakemake.input.records), snakemake.output.csv, snakemake.params.resolution)

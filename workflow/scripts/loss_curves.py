from minimaxdd import stages
from minimaxdd.io import job_context

with job_context(snakemake.log[0], snakemake.threads):
    stages.loss_curves({m: snakemake.input[m] for m in snakemake.params.methods}, snakemake.output[0])

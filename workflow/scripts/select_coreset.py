from minimaxdd import stages
from minimaxdd.io import job_context

with job_context(snakemake.log[0], snakemake.threads):
    stages.select_coreset(snakemake.input.train, snakemake.input.features, snakemake.output.pack,
                          snakemake.output.images, int(snakemake.wildcards.ipc), snakemake.wildcards.method)

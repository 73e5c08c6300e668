from minimaxdd import stages
from minimaxdd.io import job_context

with job_context(snakemake.log[0], snakemake.threads):
    stages.gather_generated(list(snakemake.input.packs), list(snakemake.input.timings), snakemake.output.pack,
                            snakemake.output.images, snakemake.output.timing)

from minimaxdd import stages
from minimaxdd.io import job_context

with job_context(snakemake.log[0], snakemake.threads):
    stages.encode(snakemake.input.train, snakemake.input.vae, snakemake.output.latents,
                  snakemake.params.batch_size, snakemake.config["device"])

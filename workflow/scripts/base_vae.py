from minimaxdd import stages
from minimaxdd.io import job_context

with job_context(snakemake.log[0], snakemake.threads):
    stages.train_base_vae(snakemake.input.train, snakemake.output.vae, snakemake.params.settings,
                          snakemake.params.seed, snakemake.config["device"])

from minimaxdd import stages
from minimaxdd.io import job_context

with job_context(snakemake.log[0], snakemake.threads):
    stages.train_base_dit(snakemake.input.latents, snakemake.output.dit, snakemake.params.settings,
                          snakemake.params.seed, snakemake.config["device"],
                          checkpoint_every=snakemake.config["checkpoint"]["every_steps"])

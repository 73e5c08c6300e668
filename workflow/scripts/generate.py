from minimaxdd import stages
from minimaxdd.io import job_context

with job_context(snakemake.log[0], snakemake.threads):
    stages.generate(snakemake.input.dit, snakemake.input.vae, list(snakemake.input.weights),
                    snakemake.params.phases, snakemake.input.train, snakemake.output.pack, snakemake.output.images, snakemake.output.timing,
                    int(snakemake.wildcards.ipc), snakemake.params.settings, snakemake.config["device"])

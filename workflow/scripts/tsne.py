from minimaxdd import stages
from minimaxdd.io import job_context

with job_context(snakemake.log[0], snakemake.threads):
    stages.tsne({m: snakemake.input[m] for m in snakemake.params.methods}, snakemake.input.net,
                snakemake.input.features, snakemake.output[0], title=f"IPC {snakemake.wildcards.ipc}",
                seed=snakemake.params.seed, device=snakemake.config["device"])

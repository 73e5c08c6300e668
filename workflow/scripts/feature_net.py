from minimaxdd import stages
from minimaxdd.io import job_context

with job_context(snakemake.log[0], snakemake.threads):
    stages.feature_net(snakemake.input.train, snakemake.input.test, snakemake.output.model,
                       snakemake.output.features, snakemake.params.settings, snakemake.config["device"])

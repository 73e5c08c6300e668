from minimaxdd import stages
from minimaxdd.io import job_context

with job_context(snakemake.log[0], snakemake.threads):
    # one class chunk (generate.classes_per_job) writes no PNG folder: gather_generated does
    chunk = "classes" in snakemake.params.keys()
    stages.generate(snakemake.input.dit, snakemake.input.vae, list(snakemake.input.weights),
                    snakemake.params.phases, snakemake.input.train, snakemake.output.pack,
                    None if chunk else snakemake.output.images, snakemake.output.timing,
                    int(snakemake.wildcards.ipc), snakemake.params.settings, snakemake.config["device"],
                    classes=snakemake.params.classes if chunk else None)

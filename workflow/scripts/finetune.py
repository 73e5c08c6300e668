from minimaxdd import stages
from minimaxdd.io import job_context

if __name__ == "__main__":  # data-parallel fine-tuning spawns processes that import this file again
    with job_context(snakemake.log[0], snakemake.threads):
        stages.finetune(snakemake.input.latents, snakemake.input.dit, snakemake.output.weights,
                        snakemake.output.losses, snakemake.wildcards.method, snakemake.params.classes,
                        snakemake.params.settings, snakemake.config["device"],
                        checkpoint_every=snakemake.config["checkpoint"]["every_steps"])

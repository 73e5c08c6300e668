from minimaxdd import stages

stages.run(stages.base_vae, snakemake)

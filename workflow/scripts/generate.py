from minimaxdd import stages

stages.run(stages.generate, snakemake)

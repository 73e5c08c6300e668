from minimaxdd import stages

stages.run(stages.modes, snakemake)

from minimaxdd import stages

stages.run(stages.validation_curves, snakemake)

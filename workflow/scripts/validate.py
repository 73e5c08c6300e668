from minimaxdd import stages

stages.run(stages.validate, snakemake)

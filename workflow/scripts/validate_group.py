from minimaxdd import stages

stages.run(stages.validate_group, snakemake)

from minimaxdd import stages

stages.run(stages.validate_soft_label, snakemake)

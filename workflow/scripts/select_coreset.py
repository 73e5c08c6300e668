from minimaxdd import stages

stages.run(stages.select_coreset, snakemake)

from minimaxdd import stages

stages.run(stages.table9, snakemake)

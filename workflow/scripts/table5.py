from minimaxdd import stages

stages.run(stages.table5, snakemake)

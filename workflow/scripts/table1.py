from minimaxdd import stages

stages.run(stages.table1, snakemake)

from minimaxdd import stages

stages.run(stages.table4, snakemake)

from minimaxdd import stages

stages.run(stages.tables, snakemake)

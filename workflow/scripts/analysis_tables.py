from minimaxdd import stages

stages.run(stages.analysis_tables, snakemake)

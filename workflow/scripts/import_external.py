from minimaxdd import stages

stages.run(stages.import_external, snakemake)

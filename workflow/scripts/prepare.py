from minimaxdd import stages

stages.run(stages.prepare, snakemake)

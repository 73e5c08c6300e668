from minimaxdd import stages

stages.run(stages.analyze, snakemake)

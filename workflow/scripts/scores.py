from minimaxdd import stages

stages.run(stages.scores, snakemake)

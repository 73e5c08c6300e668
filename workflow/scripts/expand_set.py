from minimaxdd import stages

stages.run(stages.expand_set, snakemake)

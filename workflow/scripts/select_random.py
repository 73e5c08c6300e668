from minimaxdd import stages

stages.run(stages.select_random, snakemake)

from minimaxdd import stages

stages.run(stages.encode, snakemake)

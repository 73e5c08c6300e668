from minimaxdd import stages

stages.run(stages.gather_generated, snakemake)

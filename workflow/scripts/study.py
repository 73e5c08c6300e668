from minimaxdd import stages

stages.run(stages.study, snakemake)

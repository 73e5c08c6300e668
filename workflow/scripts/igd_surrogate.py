from minimaxdd import stages

stages.run(stages.igd_surrogate, snakemake)

from minimaxdd import stages

stages.run(stages.igd_gradients, snakemake)

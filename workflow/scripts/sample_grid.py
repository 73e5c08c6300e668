from minimaxdd import stages

stages.run(stages.sample_grid, snakemake)

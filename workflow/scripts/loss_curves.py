from minimaxdd import stages

stages.run(stages.loss_curves, snakemake)

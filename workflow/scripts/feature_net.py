from minimaxdd import stages

stages.run(stages.feature_net, snakemake)

from minimaxdd import stages

stages.run(stages.tsne, snakemake)

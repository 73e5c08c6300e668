from minimaxdd import stages

if __name__ == "__main__":  # data-parallel fine-tuning spawns processes that import this file again
    stages.run(stages.finetune, snakemake)

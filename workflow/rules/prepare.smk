rule prepare:
    """Decode the dataset once into uint8 train/test packs at the configured resolution."""
    output:
        train=f"{EXP}/data/train.pt",
        test=f"{EXP}/data/test.pt",
    params:
        settings=PARAMS.prepare,
    log:
        f"{EXP}/logs/prepare.log",
    script:
        "../scripts/prepare.py"

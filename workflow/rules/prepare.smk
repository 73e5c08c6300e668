rule prepare:
    """Decode the dataset once into uint8 per-class shards of each split at the configured
    resolution, one decoding process per thread; a killed prepare keeps its finished classes."""
    output:
        train=f"{EXP}/data/train/index.json",
        test=f"{EXP}/data/test/index.json",
    params:
        settings=PARAMS.prepare,
    threads: ALL_CORES
    log:
        f"{EXP}/logs/prepare.log",
    script:
        "../scripts/prepare.py"

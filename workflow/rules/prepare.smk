rule prepare:
    """Decode the dataset once into uint8 per-class shards of each split at the configured
    resolution, one decoding process per thread; a killed prepare keeps its finished classes."""
    output:
        train=PATHS.data_index("train"),
        test=PATHS.data_index("test"),
    params:
        settings=PARAMS.prepare,
    threads: ALL_CORES
    log:
        PATHS.log("prepare"),
    script:
        "../scripts/prepare.py"

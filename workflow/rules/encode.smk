rule encode:
    """Latent mean and std of every training image and its flip, computed once for all later stages."""
    input:
        train=rules.prepare.output.train,
        vae=PATHS.vae_path(),
    output:
        latents=f"{EXP}/latents/train.pt",
    params:
        settings=PARAMS.encode,
    threads: ALL_CORES
    priority: 10  # the critical path: base models -> fine-tune -> generate
    log:
        f"{EXP}/logs/encode.log",
    script:
        "../scripts/encode.py"

rule encode:
    """Latent mean and std of every training image and its flip, computed once for all later stages."""
    input:
        train=rules.prepare.output.train,
        vae=base_vae(),
    output:
        latents=f"{EXP}/latents/train.pt",
    params:
        batch_size=config["encode"]["batch_size"],
    threads: workflow.cores
    priority: 10  # the critical path: base models -> fine-tune -> generate
    log:
        f"{EXP}/logs/encode.log",
    script:
        "../scripts/encode.py"

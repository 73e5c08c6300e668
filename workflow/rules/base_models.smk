# Tiny base models, trained here only when the config names no pretrained weights.


rule base_vae:
    """Train a tiny diffusers AutoencoderKL on the training split."""
    input:
        train=rules.prepare.output.train,
    output:
        vae=directory(PATHS.base_model("vae")),
    params:
        settings=PARAMS.base_vae,
    threads: ALL_CORES
    priority: 10  # the critical path: base models -> fine-tune -> generate
    log:
        PATHS.log("base_vae"),
    script:
        "../scripts/base_vae.py"


rule base_dit:
    """Train a tiny class-conditional DiT (learned variance, label dropout) on the cached latents."""
    input:
        latents=PATHS.latents(),
    output:
        dit=directory(PATHS.base_model("dit")),
    params:
        settings=PARAMS.base_dit,
    threads: 1  # the tiny DiT is overhead-bound: a second thread is better spent on another job
    priority: 10  # the critical path: base models -> fine-tune -> generate
    log:
        PATHS.log("base_dit"),
    script:
        "../scripts/base_dit.py"

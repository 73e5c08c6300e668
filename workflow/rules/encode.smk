rule encode:
    """Latent mean and std of every training image of a chunk of classes and its flip, computed once
    for all later stages; one job for every class ("all") unless encode.classes_per_job scatters it."""
    input:
        train=rules.prepare.output.train,
        vae=PATHS.vae_path(),
    output:
        latents=PATHS.latent_file("{chunk}"),
    wildcard_constraints:
        chunk=one_of(GRID.latent_chunks),
    params:
        settings=PARAMS.encode,
    threads: ALL_CORES
    priority: 10  # the critical path: base models -> fine-tune -> generate
    log:
        PATHS.log("encode_{chunk}"),
    script:
        "../scripts/encode.py"

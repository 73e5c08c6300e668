rule finetune:
    """Difffit fine-tuning of the base DiT with the method's criteria (none for `difffit`)."""
    input:
        latents=PATHS.phase_latents,
        dit=PATHS.dit_path(),
    output:
        weights=PATHS.finetune_file("{method}", "{phase}", "weights.safetensors"),
        losses=PATHS.finetune_file("{method}", "{phase}", "losses.csv"),
    wildcard_constraints:
        method=one_of(GRID.finetune_jobs),
        phase=r"\d+",
    params:
        settings=PARAMS.finetune,
    threads: 1  # small models: two jobs side by side beat one job on two threads
    priority: 10  # the critical path: base models -> fine-tune -> generate
    log:
        PATHS.log("finetune_{method}_phase{phase}"),
    script:
        "../scripts/finetune.py"

rule finetune:
    """Difffit fine-tuning of the base DiT with the method's criteria (none for `difffit`)."""
    input:
        latents=PATHS.phase_latents,
        dit=PATHS.dit_path(),
    output:
        weights=f"{EXP}/finetune/{{method}}/phase{{phase}}/weights.safetensors",
        losses=f"{EXP}/finetune/{{method}}/phase{{phase}}/losses.csv",
    wildcard_constraints:
        method=one_of(GRID.finetune_jobs),
        phase=r"\d+",
    params:
        settings=PARAMS.finetune,
    threads: 1  # small models: two jobs side by side beat one job on two threads
    priority: 10  # the critical path: base models -> fine-tune -> generate
    log:
        f"{EXP}/logs/finetune_{{method}}_phase{{phase}}.log",
    script:
        "../scripts/finetune.py"

rule finetune:
    """Difffit fine-tuning of the base DiT with the method's criteria (none for `difffit`)."""
    input:
        latents=rules.encode.output.latents,
        dit=base_dit(),
    output:
        weights=f"{EXP}/finetune/{{method}}/phase{{phase}}/weights.safetensors",
        losses=f"{EXP}/finetune/{{method}}/phase{{phase}}/losses.csv",
    wildcard_constraints:
        method=one_of(FINETUNE_JOBS),
        phase=r"\d+",
    params:
        settings=lambda w: method_names.finetune_settings(w.method, config),
        classes=lambda w: PHASES[int(w.phase)],
    threads: 1  # small models: two jobs side by side beat one job on two threads
    priority: 10  # the critical path: base models -> fine-tune -> generate
    log:
        f"{EXP}/logs/finetune_{{method}}_phase{{phase}}.log",
    script:
        "../scripts/finetune.py"


rule generate:
    """IPC images per class from the base (dit) or a fine-tuned model."""
    input:
        dit=base_dit(),
        vae=base_vae(),
        train=rules.prepare.output.train,
        weights=lambda w: finetuned_weights(w.method),
    output:
        pack=f"{EXP}/sets/{{method}}/ipc{{ipc}}/pack.pt",
        images=directory(f"{EXP}/sets/{{method}}/ipc{{ipc}}/images"),
        timing=f"{EXP}/sets/{{method}}/ipc{{ipc}}/generation.json",
    wildcard_constraints:
        method=one_of(GENERATED),
    params:
        settings=lambda w: method_names.generate_settings(w.method, config),
        phases=PHASES,
    threads: 1  # small models: two jobs side by side beat one job on two threads
    priority: 5  # the critical path: base models -> fine-tune -> generate
    log:
        f"{EXP}/logs/generate_{{method}}_ipc{{ipc}}.log",
    script:
        "../scripts/generate.py"

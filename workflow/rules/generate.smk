def finetuned_weights(wildcards):
    if wildcards.method == "dit":
        return []
    return rules.finetune.output.weights.format(method=wildcards.method)


rule generate:
    """IPC images per class from the base (dit) or fine-tuned (difffit, minimax) model."""
    input:
        dit=base_dit(),
        vae=base_vae(),
        train=rules.prepare.output.train,
        weights=finetuned_weights,
    output:
        pack=f"{EXP}/sets/{{method}}/ipc{{ipc}}/pack.pt",
        images=directory(f"{EXP}/sets/{{method}}/ipc{{ipc}}/images"),
    wildcard_constraints:
        method="|".join(checks.GENERATED_METHODS),
    params:
        settings=config["generate"],
    threads: 1  # small models: two jobs side by side beat one job on two threads
    priority: 5  # the critical path: base models -> fine-tune -> generate
    log:
        f"{EXP}/logs/generate_{{method}}_ipc{{ipc}}.log",
    script:
        "../scripts/generate.py"

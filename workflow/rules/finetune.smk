rule finetune:
    """Difffit fine-tuning of the base DiT, with the minimax criteria for method `minimax`."""
    input:
        latents=rules.encode.output.latents,
        dit=base_dit(),
    output:
        weights=f"{EXP}/finetune/{{method}}/weights.safetensors",
        losses=f"{EXP}/finetune/{{method}}/losses.csv",
    wildcard_constraints:
        method="|".join(checks.FINETUNED_METHODS),
    params:
        settings=lambda w: finetune_settings(w.method),
    threads: 1  # small models: two jobs side by side beat one job on two threads
    priority: 10  # the critical path: base models -> fine-tune -> generate
    log:
        f"{EXP}/logs/finetune_{{method}}.log",
    script:
        "../scripts/finetune.py"


def finetune_settings(method):
    settings = dict(config["finetune"])
    if method == "difffit":  # the criteria are off: their settings must not trigger reruns
        for key in ("memory_size", "rep_weight", "div_weight"):
            settings.pop(key)
        settings |= {"memory_size": 1, "rep_weight": 0.0, "div_weight": 0.0}
    return settings

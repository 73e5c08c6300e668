# Generation: one job per (method, IPC) by default; with `generate.classes_per_job` one job per
# (method, IPC, class chunk), joined by gather_generated into the same set (the noise of each image
# depends only on (seed, class, index), so the chunking never changes an image).


rule modes:
    """MGD3's modes: per class, the k-means centroids of its training latents, one per image of the set."""
    input:
        latents=PATHS.latents(),
    output:
        modes=PATHS.modes_file("{ipc}"),
    params:
        settings=PARAMS.modes,
    log:
        PATHS.log("modes_ipc{ipc}"),
    script:
        "../scripts/modes.py"


# Both ways exist whatever the config; generate.classes_per_job says which one builds a set.
if GRID.chunks:

    ruleorder: gather_generated > generate

else:

    ruleorder: generate > gather_generated


rule generate:
    """IPC images per class from the base (dit) or a fine-tuned model."""
    input:
        dit=PATHS.dit_path(),
        vae=PATHS.vae_path(),
        train=rules.prepare.output.train,
        weights=PATHS.generation_weights,
        guide_inputs=PATHS.guide_inputs,
    output:
        pack=PATHS.set_file("{method}", "{ipc}", "pack.pt"),
        images=directory(PATHS.set_file("{method}", "{ipc}", "images")),
        timing=PATHS.set_file("{method}", "{ipc}", "generation.json"),
    wildcard_constraints:
        method=one_of(GRID.generated),
    params:
        settings=PARAMS.generate,
    threads: 1  # small models: two jobs side by side beat one job on two threads
    priority: 5  # the critical path: base models -> fine-tune -> generate
    log:
        PATHS.log("generate_{method}_ipc{ipc}"),
    script:
        "../scripts/generate.py"


rule generate_chunk:
    """IPC images per class of one chunk of classes, from the base (dit) or a fine-tuned model."""
    input:
        dit=PATHS.dit_path(),
        vae=PATHS.vae_path(),
        train=rules.prepare.output.train,
        weights=PATHS.generation_weights,
        guide_inputs=PATHS.guide_inputs,
    output:
        pack=PATHS.set_chunk("{method}", "{ipc}", "{chunk}", ".pt"),
        timing=PATHS.set_chunk("{method}", "{ipc}", "{chunk}", ".json"),
    wildcard_constraints:
        method=one_of(GRID.generated),
        chunk=one_of(GRID.chunks),
    params:
        settings=PARAMS.generate,
    threads: 1
    priority: 5
    log:
        PATHS.log("generate_{method}_ipc{ipc}_{chunk}"),
    script:
        "../scripts/generate.py"


localrules:
    gather_generated,  # concatenation: in the snakemake process on a cluster


rule gather_generated:
    """The chunks of a generated set joined into its pack, images and run record."""
    input:
        packs=lambda w: [PATHS.set_chunk(w.method, w.ipc, chunk, ".pt") for chunk in GRID.chunks],
        timings=lambda w: [PATHS.set_chunk(w.method, w.ipc, chunk, ".json") for chunk in GRID.chunks],
    output:
        pack=PATHS.set_file("{method}", "{ipc}", "pack.pt"),
        images=directory(PATHS.set_file("{method}", "{ipc}", "images")),
        timing=PATHS.set_file("{method}", "{ipc}", "generation.json"),
    wildcard_constraints:
        method=one_of(GRID.generated),
    threads: 1
    priority: 5
    log:
        PATHS.log("gather_generated_{method}_ipc{ipc}"),
    script:
        "../scripts/gather_generated.py"

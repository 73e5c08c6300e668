# Generation: one job per (method, IPC) by default; with `generate.classes_per_job` one job per
# (method, IPC, class chunk), joined by gather_generated into the same set (the noise of each image
# depends only on (seed, class, index), so the chunking never changes an image).
CHUNKS = generation_chunks()


if not CHUNKS:

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

else:

    def chunk_classes(chunk):
        first, last = map(int, chunk.split("-"))
        return list(range(first, last + 1))

    def chunk_phases(chunk):
        """Indices of the fine-tuning phases holding a class of the chunk: only their deltas are needed."""
        classes = set(chunk_classes(chunk))
        return [i for i, phase in enumerate(PHASES) if phase is None or classes & set(phase)]

    def chunk_weights(method, chunk):
        weights = finetuned_weights(method)
        return [weights[i] for i in chunk_phases(chunk)] if weights else []

    rule generate:
        """IPC images per class of one chunk of classes, from the base (dit) or a fine-tuned model."""
        input:
            dit=base_dit(),
            vae=base_vae(),
            train=rules.prepare.output.train,
            weights=lambda w: chunk_weights(w.method, w.chunk),
        output:
            pack=chunk_file("{method}", "{ipc}", "{chunk}", ".pt"),
            timing=chunk_file("{method}", "{ipc}", "{chunk}", ".json"),
        wildcard_constraints:
            method=one_of(GENERATED),
            chunk=one_of(CHUNKS),
        params:
            settings=lambda w: method_names.generate_settings(w.method, config),
            phases=lambda w: [PHASES[i] for i in chunk_phases(w.chunk)],
            classes=lambda w: chunk_classes(w.chunk),
        threads: 1
        priority: 5
        log:
            f"{EXP}/logs/generate_{{method}}_ipc{{ipc}}_{{chunk}}.log",
        script:
            "../scripts/generate.py"

    localrules:
        gather_generated,  # concatenation: in the snakemake process on a cluster

    rule gather_generated:
        """The chunks of a generated set joined into its pack, images and run record."""
        input:
            packs=lambda w: [chunk_file(w.method, w.ipc, chunk, ".pt") for chunk in CHUNKS],
            timings=lambda w: [chunk_file(w.method, w.ipc, chunk, ".json") for chunk in CHUNKS],
        output:
            pack=f"{EXP}/sets/{{method}}/ipc{{ipc}}/pack.pt",
            images=directory(f"{EXP}/sets/{{method}}/ipc{{ipc}}/images"),
            timing=f"{EXP}/sets/{{method}}/ipc{{ipc}}/generation.json",
        wildcard_constraints:
            method=one_of(GENERATED),
        threads: 1
        priority: 5
        log:
            f"{EXP}/logs/gather_generated_{{method}}_ipc{{ipc}}.log",
        script:
            "../scripts/gather_set.py"

rule select_random:
    """A seeded random subset of the real training images, IPC per class."""
    input:
        train=rules.prepare.output.train,
    output:
        pack=f"{EXP}/sets/random/ipc{{ipc}}/pack.pt",
        images=directory(f"{EXP}/sets/random/ipc{{ipc}}/images"),
    params:
        seed=config["select"]["seed"],
    log:
        f"{EXP}/logs/select_random_ipc{{ipc}}.log",
    script:
        "../scripts/select_random.py"

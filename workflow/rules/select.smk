rule select_random:
    """The random real set: the first IPC training images of each class (select.random_order), as the reference."""
    input:
        train=rules.prepare.output.train,
    output:
        pack=PATHS.set_file("random", "{ipc}", "pack.pt"),
        images=directory(PATHS.set_file("random", "{ipc}", "images")),
    params:
        settings=PARAMS.select_random,
    log:
        PATHS.log("select_random_ipc{ipc}"),
    script:
        "../scripts/select_random.py"


rule select_coreset:
    """Herding or k-center per class on the feature network's embedding of the training split."""
    input:
        train=rules.prepare.output.train,
        features=rules.feature_net.output.features,
    output:
        pack=PATHS.set_file("{method}", "{ipc}", "pack.pt"),
        images=directory(PATHS.set_file("{method}", "{ipc}", "images")),
    wildcard_constraints:
        method="herding|kcenter",
    params:
        settings=PARAMS.select_coreset,
    log:
        PATHS.log("select_{method}_ipc{ipc}"),
    script:
        "../scripts/select_coreset.py"


rule import_external:
    """A set distilled elsewhere (external: {name: {IPC: folder}}), decoded like the real images."""
    input:
        train=rules.prepare.output.train,
        folder=PATHS.external_folder,  # a changed folder (files added or removed) reruns the import
    output:
        pack=PATHS.set_file("{method}", "{ipc}", "pack.pt"),
        images=directory(PATHS.set_file("{method}", "{ipc}", "images")),
    wildcard_constraints:
        method=one_of(GRID.external),
    params:
        settings=PARAMS.import_external,
    log:
        PATHS.log("import_external_{method}_ipc{ipc}"),
    script:
        "../scripts/import_external.py"

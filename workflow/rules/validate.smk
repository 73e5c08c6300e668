# One job per seed (validate) or per (method, IPC, net) with every seed (validate_group): both rules
# exist whatever the config; validate.group_seeds says which one builds the records.
if GRID.config["validate"]["group_seeds"]:

    ruleorder: validate_group > validate

else:

    ruleorder: validate > validate_group


rule validate:
    """Train one classifier on one surrogate set; top-1 accuracy on the real test split."""
    input:
        train=lambda w: PATHS.set_pack(w.method, w.ipc),
        test=rules.prepare.output.test,
    output:
        record=PATHS.record("{method}", "{ipc}", "{arch}", "{seed}"),
    wildcard_constraints:
        method=one_of(GRID.validated),
    params:
        settings=PARAMS.validate,
    log:
        PATHS.log("validate/{method}_ipc{ipc}_{arch}_seed{seed}"),
    script:
        "../scripts/validate.py"


rule validate_group:
    """Train one classifier per seed on one surrogate set, in one process (validate.group_seeds)."""
    input:
        train=lambda w: PATHS.set_pack(w.method, w.ipc),
        test=rules.prepare.output.test,
    output:
        records=[PATHS.record("{method}", "{ipc}", "{arch}", seed) for seed in GRID.seeds],
    wildcard_constraints:
        method=one_of(GRID.validated),
    params:
        settings=PARAMS.validate,
    log:
        PATHS.log("validate/{method}_ipc{ipc}_{arch}_group"),
    script:
        "../scripts/validate_group.py"


rule validate_full:
    """The upper bound: train on the whole training split."""
    input:
        train=rules.prepare.output.train,
        test=rules.prepare.output.test,
    output:
        record=PATHS.full_record("{arch}", "{seed}"),
    params:
        settings=PARAMS.validate,
    log:
        PATHS.log("validate/full_{arch}_seed{seed}"),
    script:
        "../scripts/validate.py"


rule expand_set:
    """Dataset expansion (Table 9): the full training split plus a generated set."""
    input:
        train=rules.prepare.output.train,
        generated=lambda w: PATHS.set_pack(w.method, w.ipc),
    output:
        pack=PATHS.set_file("full+{method}", "{ipc}", "pack.pt"),
    wildcard_constraints:
        method=one_of(GRID.config["expansion"]["methods"]),
    log:
        PATHS.log("expand_{method}_ipc{ipc}"),
    script:
        "../scripts/expand_set.py"


rule validate_soft_label:
    """Train a classifier on one surrogate set under RDED's soft-label protocol (a teacher labels
    every crop), for one seed or, with validate.group_seeds, every seed in one job; top-1 accuracy
    on the real test split."""
    input:
        train=lambda w: PATHS.set_pack(w.method, w.ipc),
        test=rules.prepare.output.test,
        teacher=PATHS.teacher(),
    output:
        records=[PATHS.run_record("validate_soft", "{method}", "{ipc}", "{arch}", seed) for seed in GRID.seeds]
        if GRID.config["validate"]["group_seeds"] else [PATHS.run_record("validate_soft", "{method}", "{ipc}", "{arch}", "{seed}")],
    wildcard_constraints:
        method=one_of(GRID.subset_methods),
        arch=one_of(GRID.soft_archs),
    params:
        settings=PARAMS.validate_soft_label,
    log:
        PATHS.log("validate_soft/{method}_ipc{ipc}_{arch}_" + ("group" if GRID.config["validate"]["group_seeds"] else "seed{seed}")),
    script:
        "../scripts/validate_soft_label.py"


rule validate_no_augment:
    """Train a classifier on one surrogate set under the hard-label protocol without augmentation
    or CutMix (validate.protocols no_augment: DD-Ranking's ARS), for one seed or, with
    validate.group_seeds, every seed in one job; top-1 accuracy on the real test split."""
    input:
        train=lambda w: PATHS.set_pack(w.method, w.ipc),
        test=rules.prepare.output.test,
    output:
        records=[PATHS.run_record("validate_noaug", "{method}", "{ipc}", "{arch}", seed) for seed in GRID.seeds]
        if GRID.config["validate"]["group_seeds"] else [PATHS.run_record("validate_noaug", "{method}", "{ipc}", "{arch}", "{seed}")],
    wildcard_constraints:
        method=one_of(GRID.subset_methods),
    params:
        settings=PARAMS.validate_no_augment,
    log:
        PATHS.log("validate_noaug/{method}_ipc{ipc}_{arch}_" + ("group" if GRID.config["validate"]["group_seeds"] else "seed{seed}")),
    script:
        "../scripts/validate_group.py"

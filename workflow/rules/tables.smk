rule table1:
    """Table 1 (mean ± std over seeds, rows IPC x arch, columns methods) and accuracy-vs-IPC plot."""
    input:
        records=PATHS.validation_records(),
    output:
        csv=report(PATHS.table("table1.csv"), caption="../report/table1.rst", category="Tables",
                   labels={"table": "Table 1: accuracy"}),
        md=PATHS.table("table1.md"),
        plot=report(PATHS.table("accuracy_vs_ipc.png"), caption="../report/accuracy_vs_ipc.rst",
                    category="Accuracy", labels={"figure": "accuracy vs IPC"}),
    params:
        settings=PARAMS.table1,
    log:
        PATHS.log("table1"),
    script:
        "../scripts/table1.py"


rule study:
    """One parameter sweep of `studies`: its table and line plot (Fig. 6, Table 8 shapes)."""
    input:
        records=lambda w: PATHS.study_records(GRID.studies[w.study]),
        timings=lambda w: PATHS.study_timings(GRID.studies[w.study]),
    output:
        csv=report(PATHS.table("study_{study}.csv"), caption="../report/study.rst", category="Studies",
                   labels={"study": "{study}", "kind": "table"}),
        md=PATHS.table("study_{study}.md"),
        plot=report(PATHS.table("study_{study}.png"), caption="../report/study.rst", category="Studies",
                    labels={"study": "{study}", "kind": "plot"}),
    wildcard_constraints:
        study=one_of(GRID.studies),
    params:
        settings=PARAMS.study,
    log:
        PATHS.log("study_{study}"),
    script:
        "../scripts/study.py"


rule table5:
    """The criteria ablation (Table 5): each fine-tuned method with the form of each term."""
    input:
        records=PATHS.table5_records(),
    output:
        csv=report(PATHS.table("table5.csv"), caption="../report/table5.rst", category="Tables",
                   labels={"table": "Table 5: criteria ablation"}),
        md=PATHS.table("table5.md"),
    params:
        settings=PARAMS.table5,
    log:
        PATHS.log("table5"),
    script:
        "../scripts/table5.py"


rule table9:
    """Dataset expansion (Table 9): the full training split alone and with generated sets."""
    input:
        records=PATHS.table9_records(),
    output:
        csv=report(PATHS.table("table9.csv"), caption="../report/table9.rst", category="Tables",
                   labels={"table": "Table 9: dataset expansion"}),
        md=PATHS.table("table9.md"),
    params:
        settings=PARAMS.table9,
    log:
        PATHS.log("table9"),
    script:
        "../scripts/table9.py"


rule validation_curves:
    """Test accuracy over validation training per method and net (the best and the last of Table 1)."""
    input:
        records=PATHS.validation_curves_records,
    output:
        figure=report(PATHS.figure("validation_curves_ipc{ipc}.png"), caption="../report/validation_curves.rst",
                      category="Accuracy", labels={"figure": "validation curves", "IPC": "{ipc}"}),
    params:
        settings=PARAMS.validation_curves,
    log:
        PATHS.log("validation_curves_ipc{ipc}"),
    script:
        "../scripts/validation_curves.py"


rule scores:
    """Gain over random real images, share of the full-data accuracy and DD-Ranking's HLR, IOR and
    LRS per method (and ARS with validate.protocols no_augment), and the leaderboard."""
    input:
        records=PATHS.validation_records(),
        soft_records=PATHS.soft_label_records() if "soft_label" in GRID.protocols else [],
        no_augment_records=PATHS.no_augment_records() if "no_augment" in GRID.protocols else [],
    output:
        csv=report(PATHS.table("scores.csv"), caption="../report/scores.rst", category="Tables",
                   labels={"table": "gain over random"}),
        md=PATHS.table("scores.md"),
        leaderboard_csv=report(PATHS.table("leaderboard.csv"), caption="../report/scores.rst", category="Tables",
                               labels={"table": "leaderboard"}),
        leaderboard_md=PATHS.table("leaderboard.md"),
    params:
        settings=PARAMS.scores,
    log:
        PATHS.log("scores"),
    script:
        "../scripts/scores.py"


rule table4:
    """Table 4: accuracy under RDED's soft-label protocol (mean ± std over seeds, rows IPC x arch)."""
    input:
        records=PATHS.soft_label_records(),
    output:
        csv=report(PATHS.table("table4.csv"), caption="../report/table4.rst", category="Tables",
                   labels={"table": "Table 4: soft-label protocol"}),
        md=PATHS.table("table4.md"),
    params:
        settings=PARAMS.table4,
    log:
        PATHS.log("table4"),
    script:
        "../scripts/table4.py"

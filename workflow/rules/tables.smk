rule tables:
    """Table 1 (mean ± std over seeds, rows IPC x arch, columns methods) and accuracy-vs-IPC plot."""
    input:
        records=validation_records(),
    output:
        csv=report(f"{EXP}/tables/table1.csv", caption="../report/table1.rst", category="Tables",
                   labels={"table": "Table 1: accuracy"}),
        md=f"{EXP}/tables/table1.md",
        plot=report(f"{EXP}/tables/accuracy_vs_ipc.png", caption="../report/accuracy_vs_ipc.rst",
                    category="Accuracy", labels={"figure": "accuracy vs IPC"}),
    params:
        methods=METHODS,
        ipcs=IPCS,
        archs=ARCHS,
        resolution=config["dataset"]["resolution"],
    log:
        f"{EXP}/logs/tables.log",
    script:
        "../scripts/tables.py"


rule study:
    """One parameter sweep of `studies`: its table and line plot (Fig. 6, Table 8 shapes)."""
    input:
        records=lambda w: study_records(STUDIES[w.study]),
        timings=lambda w: study_timings(STUDIES[w.study]),
    output:
        csv=report(f"{EXP}/tables/study_{{study}}.csv", caption="../report/study.rst", category="Studies",
                   labels={"study": "{study}", "kind": "table"}),
        md=f"{EXP}/tables/study_{{study}}.md",
        plot=report(f"{EXP}/tables/study_{{study}}.png", caption="../report/study.rst", category="Studies",
                    labels={"study": "{study}", "kind": "plot"}),
    wildcard_constraints:
        study=one_of(STUDIES),
    params:
        study=lambda w: STUDIES[w.study],
        points=lambda w: checks.study_points(config, STUDIES[w.study]),
        resolution=config["dataset"]["resolution"],
    log:
        f"{EXP}/logs/study_{{study}}.log",
    script:
        "../scripts/study.py"


rule table5:
    """The criteria ablation (Table 5): each fine-tuned method with the form of each term."""
    input:
        records=[record(m, ipc, a, s) for m in TABLE5_METHODS
                 for ipc in IPCS for a in ARCHS for s in SEEDS],
    output:
        csv=report(f"{EXP}/tables/table5.csv", caption="../report/table5.rst", category="Tables",
                   labels={"table": "Table 5: criteria ablation"}),
        md=f"{EXP}/tables/table5.md",
    params:
        methods=TABLE5_METHODS,
        forms={m: method_names.criteria(m, config) for m in FINETUNED},
        ipcs=IPCS,
        archs=ARCHS,
        resolution=config["dataset"]["resolution"],
    log:
        f"{EXP}/logs/table5.log",
    script:
        "../scripts/table5.py"


rule table9:
    """Dataset expansion (Table 9): the full training split alone and with generated sets."""
    input:
        records=full_records()
        + [record(m, ipc, a, s) for m in EXPANDED for ipc in config["expansion"]["ipcs"] for a in ARCHS for s in SEEDS],
    output:
        csv=report(f"{EXP}/tables/table9.csv", caption="../report/table9.rst", category="Tables",
                   labels={"table": "Table 9: dataset expansion"}),
        md=f"{EXP}/tables/table9.md",
    params:
        resolution=config["dataset"]["resolution"],
    log:
        f"{EXP}/logs/table9.log",
    script:
        "../scripts/table9.py"

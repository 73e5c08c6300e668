rule tables:
    """Table 1 (mean ± std over seeds, rows IPC x arch, columns methods) and accuracy-vs-IPC plot."""
    input:
        records=validation_records(),
    output:
        csv=f"{EXP}/tables/table1.csv",
        md=f"{EXP}/tables/table1.md",
        plot=f"{EXP}/tables/accuracy_vs_ipc.png",
    params:
        methods=METHODS,
        ipcs=IPCS,
        archs=ARCHS,
        resolution=config["dataset"]["resolution"],
    log:
        f"{EXP}/logs/tables.log",
    script:
        "../scripts/tables.py"

# The distribution analyses of Table 2, Fig. 3 and Table 10, in the feature space of a ResNetAP-10
# trained on the full training split.


rule feature_net:
    """Train the ResNetAP-10 feature network on the full training split; embed the training split."""
    input:
        train=rules.prepare.output.train,
        test=rules.prepare.output.test,
    output:
        model=PATHS.feature_file("resnetap10.pt"),
        features=PATHS.feature_file("train_features.pt"),
    params:
        settings=PARAMS.feature_net,
    threads: 1  # leaves the other core to the base models, which are on the critical path
    priority: 5
    log:
        PATHS.log("feature_net"),
    script:
        "../scripts/feature_net.py"


rule analyze:
    """MMD, precision / recall / density / coverage and Fréchet distance of one set vs the full data."""
    input:
        pack=lambda w: PATHS.set_pack(w.method, w.ipc),
        model=rules.feature_net.output.model,
        features=rules.feature_net.output.features,
    output:
        metrics=PATHS.analysis_record("{method}", "{ipc}"),
    params:
        settings=PARAMS.analyze,
    log:
        PATHS.log("analyze/{method}_ipc{ipc}"),
    script:
        "../scripts/analyze.py"


rule tsne:
    """One t-SNE of real and surrogate features per IPC (Fig. 3)."""
    input:
        packs=set_packs,
        model=rules.feature_net.output.model,
        features=rules.feature_net.output.features,
    output:
        figure=report(PATHS.figure("tsne_ipc{ipc}.png"), caption="../report/tsne.rst", category="Distribution",
                      labels={"figure": "t-SNE", "IPC": "{ipc}"}),
    params:
        settings=PARAMS.tsne,
    log:
        PATHS.log("tsne_ipc{ipc}"),
    script:
        "../scripts/tsne.py"


rule analysis_tables:
    input:
        records=PATHS.analysis_records(),
    output:
        table2=report(PATHS.table("table2.csv"), caption="../report/table2.rst", category="Tables",
                      labels={"table": "Table 2: MMD"}),
        table2_md=PATHS.table("table2.md"),
        table10=report(PATHS.table("table10.csv"), caption="../report/table10.rst", category="Tables",
                       labels={"table": "Table 10: generation quality"}),
        table10_md=PATHS.table("table10.md"),
    params:
        settings=PARAMS.analysis_tables,
    log:
        PATHS.log("analysis_tables"),
    script:
        "../scripts/analysis_tables.py"


rule loss_curves:
    input:
        losses=[PATHS.finetune_file(m, 0, "losses.csv") for m in GRID.finetuned],
    output:
        figure=report(PATHS.figure("finetune_losses.png"), caption="../report/losses.rst", category="Fine-tuning",
                      labels={"figure": "loss curves"}),
    params:
        settings=PARAMS.loss_curves,
    log:
        PATHS.log("loss_curves"),
    script:
        "../scripts/loss_curves.py"


rule sample_grid:
    input:
        packs=set_packs,
        # the rows' labels: an ImageNet wnid by its common name (the two lists are in the same order)
        imagenet_wnids=f"{workflow.basedir}/data/imagenet/imagenet1k-wnids.txt",
        imagenet_names=f"{workflow.basedir}/data/imagenet/imagenet1k-names.txt",
    output:
        figure=report(PATHS.figure("samples_ipc{ipc}.png"), caption="../report/samples.rst", category="Samples",
                      labels={"figure": "samples", "IPC": "{ipc}"}),
    params:
        settings=PARAMS.sample_grid,
    log:
        PATHS.log("sample_grid_ipc{ipc}"),
    script:
        "../scripts/sample_grid.py"

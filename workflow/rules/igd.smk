# IGD (influence-guided diffusion): a surrogate classifier's trajectory and its per-class real
# gradients, once per experiment, shared by every influence-guided set (igd, igd_<method>, any IPC).


rule igd_surrogate:
    """IGD's surrogate: trained on the real training split, its weights kept at igd.checkpoints."""
    input:
        train=rules.prepare.output.train,
        test=rules.prepare.output.test,
    output:
        surrogate=PATHS.igd_surrogate,
    params:
        settings=PARAMS.igd_surrogate,
    log:
        PATHS.log("igd_surrogate"),
    script:
        "../scripts/igd_surrogate.py"


rule igd_gradients:
    """Per class, the mean real-image gradient of the surrogate at each kept checkpoint."""
    input:
        train=rules.prepare.output.train,
        surrogate=rules.igd_surrogate.output.surrogate,
    output:
        gradients=directory(PATHS.igd_gradients),
    params:
        settings=PARAMS.igd_gradients,
    log:
        PATHS.log("igd_gradients"),
    script:
        "../scripts/igd_gradients.py"

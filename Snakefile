# Minimax-diffusion dataset distillation (Gu et al., CVPR 2024) as a Snakemake workflow.
# Run: snakemake --cores all   (add --configfile configs/<preset>.yaml for a paper-scale run)

from snakemake.utils import min_version, validate

from minimaxdd import config as checks

min_version("8.0")


configfile: "config.yaml"


report: "workflow/report/workflow.rst"


checks.normalize(config)
validate(config, "workflow/schemas/config.schema.yaml")
checks.canonicalize(config)
checks.check(config)


include: "workflow/rules/common.smk"
include: "workflow/rules/prepare.smk"
include: "workflow/rules/base_models.smk"
include: "workflow/rules/encode.smk"
include: "workflow/rules/finetune.smk"
include: "workflow/rules/generate.smk"
include: "workflow/rules/analysis.smk"
include: "workflow/rules/select.smk"
include: "workflow/rules/validate.smk"
include: "workflow/rules/tables.smk"


# Seconds of work each: on a cluster they run in the snakemake process instead of as jobs.
localrules:
    all,
    tables,
    study,
    table5,
    table9,
    analysis_tables,
    loss_curves,
    sample_grid,


rule all:
    input:
        final_outputs(),
    default_target: True

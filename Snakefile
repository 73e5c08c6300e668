# Minimax-diffusion dataset distillation (Gu et al., CVPR 2024) as a Snakemake workflow.
# Run: snakemake --cores all   (add --configfile configs/<preset>.yaml for a paper-scale run)

from snakemake.utils import min_version

from minimaxdd import plan as planning
from minimaxdd.params import Params
from minimaxdd.paths import Paths

min_version("8.0")


report: "workflow/report/workflow.rst"


# A --configfile is the whole config (with the schema's defaults); without one, the embedded default
# config.yaml is. --config values go on top of either. The two files are never merged.
loaded = planning.load_config(planning.read_config(config, workflow.overwrite_configfiles))
config.clear()
config.update(loaded)
# The data and model checks run once, in the main process, before any job; jobs only slice the grid.
GRID = planning.check(config) if workflow.is_main_process else planning.Grid(config)
PATHS = Paths(GRID)  # where each artifact lives
PARAMS = Params(GRID, PATHS)  # each rule's settings
# Damaged artifacts stop the run here, named; with repair: true, what wrote them is rebuilt too.
REBUILT = planning.repair(GRID, PATHS) if workflow.is_main_process else []


include: "workflow/rules/common.smk"
include: "workflow/rules/prepare.smk"
include: "workflow/rules/base_models.smk"
include: "workflow/rules/encode.smk"
include: "workflow/rules/finetune.smk"
include: "workflow/rules/igd.smk"
include: "workflow/rules/generate.smk"
include: "workflow/rules/analysis.smk"
include: "workflow/rules/select.smk"
include: "workflow/rules/validate.smk"
include: "workflow/rules/tables.smk"


# Seconds of work each: on a cluster they run in the snakemake process instead of as jobs.
localrules:
    all,
    table1,
    study,
    table5,
    table9,
    analysis_tables,
    loss_curves,
    sample_grid,
    validation_curves,
    scores,
    table4,


onstart:
    planning.start_run(GRID)


rule all:
    input:
        PATHS.final_outputs(),
        REBUILT,
    default_target: True

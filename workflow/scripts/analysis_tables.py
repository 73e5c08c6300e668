from pathlib import Path

from minimaxdd import stages
from minimaxdd.io import job_context

with job_context(snakemake.log[0], snakemake.threads):
    stages.make_analysis_tables(list(snakemake.input.records), str(Path(snakemake.output.table2).parent),
                                snakemake.params.methods, snakemake.params.ipcs)

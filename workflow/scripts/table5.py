from minimaxdd import stages
from minimaxdd.io import job_context

p = snakemake.params
with job_context(snakemake.log[0], snakemake.threads):
    stages.table5(list(snakemake.input.records), snakemake.output.csv, p.methods, p.forms, p.ipcs, p.archs,
                  p.resolution)

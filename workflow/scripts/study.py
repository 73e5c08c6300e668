from minimaxdd import stages
from minimaxdd.io import job_context

p = snakemake.params
with job_context(snakemake.log[0], snakemake.threads):
    stages.study_table(list(snakemake.input.records), list(snakemake.input.timings), snakemake.output.csv, p.study,
                       p.points, p.resolution)

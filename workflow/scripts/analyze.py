from minimaxdd import stages
from minimaxdd.io import job_context

w = snakemake.wildcards
with job_context(snakemake.log[0], snakemake.threads):
    stages.analyze(snakemake.input.set, snakemake.input.net, snakemake.input.features, snakemake.output.record,
                   record={"method": w.method, "ipc": int(w.ipc)}, k=snakemake.params.k,
                   device=snakemake.config["device"])

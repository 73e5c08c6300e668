from minimaxdd import stages
from minimaxdd.io import job_context

w = snakemake.wildcards
record = {"method": w.get("method", "full"), "ipc": int(w["ipc"]) if "ipc" in w.keys() else None,
          "arch": w.arch, "seed": int(w.seed)}
with job_context(snakemake.log[0], snakemake.threads):
    stages.validate(snakemake.input.set, snakemake.input.test, snakemake.output.record, arch=w.arch,
                    seed=int(w.seed), epochs=snakemake.params.epochs, batch_size=snakemake.params.batch_size,
                    lr=snakemake.params.lr, width_factor=snakemake.params.width_factor, record=record,
                    device=snakemake.config["device"], checkpoint_every=snakemake.config["checkpoint"]["every_epochs"])

"""One function per workflow stage, named as its rule: paths and settings in, artifacts out
(written atomically).

Each stage takes keyword arguments only: its rule's named inputs and outputs, the settings the
rule gives it (params.py), and the runtime values that change no result (device, checkpoint
interval). `run` makes that call for a Snakemake job; tests call the stages directly. Every job
is a fresh process, so the heavy imports (diffusers, scikit-learn, matplotlib: seconds each) stay
inside the stages that need them.
"""

from __future__ import annotations

import csv
import shutil
import time
from pathlib import Path

import torch
from tqdm import tqdm

from . import checkpoints, data, guidance, parallel, sets
from .degenerate import refuse_flat_images, refuse_non_finite, refuse_undefined
from .dit import DiT, DiTConfig
from .features import embed_images, load_feature_net, train_feature_net
from .guidance import NO_GUIDE
from .io import atomic_path, job_context, job_environment, load_json, load_torch, pick_device, save_json, save_torch
from .resume import Checkpointer
from .training import LatentSet, finetune_dit, load_latents, pretrain_dit


def run(stage, job) -> None:
    """Run one Snakemake job (duck-typed; the package imports no Snakemake): call `stage` with the
    job's named inputs and outputs, its `settings` param and the runtime values of the loaded config,
    with its prints and progress bars in the job's log."""
    from .plan import runtime

    files = {}
    for name, value in [*job.input.items(), *job.output.items()]:
        if name in files:
            raise ValueError(f"rule {job.rule}: {name!r} names both an input and an output")
        files[name] = value if isinstance(value, str) else list(value)
    settings = job.params.settings if "settings" in job.params.keys() else {}
    guidance.load_plugins(job.config["plugins"])  # a plug-in's method names are methods of every job
    with job_context(job.log[0], job.threads):
        stage(**files, **settings, **runtime(job.config, stage.__name__, job.threads))


def prepare(*, train: str, test: str, dataset: dict, sources: str, workers: int) -> None:
    """Each split as per-class shards (their index files `train`, `test`), decoded by `workers`
    processes; a killed prepare keeps its finished classes. `sources`: the source files'
    fingerprint (data.source_fingerprint, the rule's rerun trigger), kept in each index."""
    for split, index in (("train", train), ("test", test)):
        data.prepare_split(dataset, split, index, workers, {"sources": sources})


def base_vae(*, train: str, vae: str, tiny_vae: dict, seed: int, device: str) -> None:
    from .vae import save_vae, train_tiny_vae

    images = data.open_set(train).images[:]  # the tiny VAE is for toy data: all of it on the device
    save_vae(train_tiny_vae(images, seed=seed, device=pick_device(device, tf32=True), **tiny_vae), vae)


def encode(*, train: str, vae: str, latents: str, batch_size: int, classes: list[int] | None, device: str) -> None:
    """The latents of the training images of `classes` (every class when None: one job), read from
    the split's shards of those classes."""
    from .pretrained import resolve_vae_folder
    from .vae import encode_images, load_vae

    device = pick_device(device, tf32=True)
    split = data.open_set(train)
    images, labels = split.of_classes(classes)
    cache = encode_images(load_vae(resolve_vae_folder(vae), device), images, batch_size, device)
    save_torch(cache | {"labels": labels, "class_ids": split.class_ids, "class_names": split.class_names},
               latents)


def base_dit(*, latents: list[str], dit: str, tiny_dit: dict, seed: int, device: str,
             checkpoint_every_steps: int, compile: bool) -> None:
    device = pick_device(device, tf32=True)
    cache = load_latents(latents)
    settings = dict(tiny_dit)
    training = {k: settings.pop(k) for k in ("steps", "batch_size", "lr", "ema_decay")}
    channels, size = cache["mean"].shape[2], cache["mean"].shape[-1]
    torch.manual_seed(seed)
    model = DiT(DiTConfig(input_size=size, in_channels=channels, num_classes=max(cache["class_ids"]) + 1, **settings))
    checkpointer = Checkpointer.next_to(dit, checkpoint_every_steps, [settings, training, seed, str(device)], latents)
    trained = pretrain_dit(model, LatentSet(cache, device), seed=seed, device=device, checkpointer=checkpointer,
                           compile=compile, **training)
    checkpoints.save_dit(trained, dit)
    checkpointer.remove()


def finetune(*, latents: list[str], dit: str, weights: str, losses: str, method: str, classes: list[int] | None,
             finetune: dict, dit_num_heads: int | None, device: str, checkpoint_every_steps: int,
             compile: bool) -> None:
    """Fine-tune on the training latents of `classes` (all when None: a phase of ImageNet-100 is a
    subset), read from the latent files holding them. `finetune`: the method's fine-tuning settings
    (config["finetune"] with the method's overrides and its two criteria forms). With `gpus` > 1 the job runs as that many data-parallel
    processes; rank 0 writes the outputs."""
    settings = dict(finetune)
    gpus = settings.pop("gpus")
    job = (latents, dit, dit_num_heads, weights, losses, method, classes, settings, checkpoint_every_steps, compile)
    if gpus == 1:
        _finetune_rank(0, 1, pick_device(device, tf32=True), *job)
    else:
        parallel.spawn(_finetune_rank, gpus, pick_device(device, tf32=True), *job)


def _finetune_rank(rank: int, world_size: int, device: torch.device, latent_files: list[str], dit_path: str,
                   dit_num_heads: int | None, weights_out: str, losses_out: str, method: str, classes: list[int] | None, settings: dict,
                   checkpoint_every: int, compile: bool) -> None:
    from .pretrained import load_pretrained_dit

    model = load_pretrained_dit(dit_path, device, dit_num_heads)
    latents = LatentSet(load_latents(latent_files, classes), device, classes)
    checkpointer = Checkpointer.next_to(weights_out, checkpoint_every,
                                        [method, classes, settings, world_size, device.type], [*latent_files, dit_path])
    start = time.time()
    model_params, ema_params, rows = finetune_dit(model, latents, device=device, checkpointer=checkpointer,
                                                  compile=compile, **settings)
    if rank != 0:
        return
    refuse_non_finite({f"model.{k}": v for k, v in model_params.items()} | {f"ema.{k}": v for k, v in ema_params.items()},
                      made_by=f"{weights_out} (fine-tuned as {method} with {settings})")
    checkpoints.save_difffit(model_params, ema_params, weights_out,
                             {"method": method, "steps": len(rows), "processes": world_size,
                              "wall_s": round(time.time() - start, 1), "compile": compile})
    with atomic_path(losses_out) as tmp, open(tmp, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    checkpointer.remove()


def modes(*, latents: list[str], modes: str, ipc: int, seed: int) -> None:
    """The k-means modes of every class, one latent file (a chunk of classes) in memory at a time."""
    from .guidance.mgd3 import class_modes

    save_torch({"modes": torch.cat([class_modes(load_torch(file), ipc, seed) for file in latents]), "ipc": ipc}, modes)


def generate(*, dit: str, vae: str, train: str, weights: list[str], guide_inputs: list[str], pack: str,
             timing: str, ipc: int, phases: list, generate: dict, dit_num_heads: int | None, device: str,
             compile: bool, images: str | None = None, classes: list[int] | None = None) -> None:
    """`weights`: the fine-tuned Difffit delta of each class phase (`phases`: the class indices of
    each, None = all classes), or no weights for the plain base DiT. `guide_inputs`: the artifacts a
    guided method's guide reads (`generate["guidance"]` names the method and holds its settings),
    else none. `classes`: only these class indices (one chunk
    of a set scattered over jobs, joined by `gather_generated`; each phase then generates its
    classes in the chunk, and no PNG folder is written: the gather writes it)."""
    from .generate import generate_set
    from .pretrained import load_pretrained_dit, resolve_vae_folder
    from .vae import load_vae

    device = pick_device(device, tf32=True)
    real = data.open_set(train)  # for the class names and ids: no image is read
    autoencoder = load_vae(resolve_vae_folder(vae), device)
    start = time.time()
    model = load_pretrained_dit(dit, device, dit_num_heads)
    settings = dict(generate)
    guide = NO_GUIDE
    if "guidance" in settings:
        guide_settings = dict(settings.pop("guidance"))
        method = guidance.method(guide_settings.pop("method"))
        guide = method.build_guide(guide_settings, guide_inputs, autoencoder, device)
    parts = []
    for delta, phase in zip(weights, phases) if weights else [(None, None)]:
        if classes is not None:
            phase = list(classes) if phase is None else [c for c in phase if c in classes]
            if not phase:
                continue
        if delta:  # every delta holds the same Difffit parameters, so each one fully replaces the last
            checkpoints.apply_difffit(model, delta)
        parts.append(generate_set(model, autoencoder, class_ids=real.class_ids, ipc=ipc, device=device,
                                  classes=phase, guide=guide, compile=compile, **settings))
    pixels, labels = torch.cat([p[0] for p in parts]), torch.cat([p[1] for p in parts])
    wall_s = time.time() - start
    refuse_flat_images(pixels, labels, real.class_names, made_by=f"{pack} (generated with {generate})")
    data.RealPack(pixels, labels, real.class_names, real.class_ids).save(pack)
    if images is not None:
        sets.write_image_folder(pixels, labels, real.class_names, images)
    chunk = {} if classes is None else {"classes": [int(c) for c in classes]}
    save_json({"images": len(pixels), "wall_s": wall_s, "seconds_per_image": wall_s / len(pixels),
               "device": str(device), "compile": compile, **chunk, **generate, **job_environment()}, timing)


def gather_generated(*, packs: list[str], timings: list[str], pack: str, images: str, timing: str) -> None:
    """Join the class chunks of a scattered generation into the set one job would have written: the
    same pack (noise depends only on (seed, class, index)), images and run record, whose wall time
    and images are the chunks' sums; `chunks` lists each job's classes, images, time and host."""
    loaded = [data.RealPack.load(p) for p in packs]
    first = loaded[0]
    seen = set()
    for path, chunk in zip(packs, loaded):
        if chunk.class_names != first.class_names or chunk.class_ids != first.class_ids:
            raise ValueError(f"{path}: classes differ from those of {packs[0]}")
        present = set(chunk.labels.unique().tolist())
        if present & seen:
            raise ValueError(f"{path}: classes {sorted(present & seen)} are also in another chunk")
        seen |= present
    pixels, labels = torch.cat([p.images for p in loaded]), torch.cat([p.labels for p in loaded])
    data.RealPack(pixels, labels, first.class_names, first.class_ids).save(pack)
    sets.write_image_folder(pixels, labels, first.class_names, images)

    records = [load_json(p) for p in timings]
    per_job = ("images", "wall_s", "seconds_per_image", "classes", "host", "slurm_job_id")
    wall_s = sum(r["wall_s"] for r in records)
    save_json({**{k: v for k, v in records[0].items() if k not in per_job},
               "images": len(pixels), "wall_s": wall_s, "seconds_per_image": wall_s / len(pixels),
               "chunks": [{k: r.get(k) for k in ("classes", "images", "wall_s", "host", "slurm_job_id")}
                          for r in records],
               **job_environment()}, timing)


def igd_surrogate(*, train: str, test: str, surrogate: str, arch: str, epochs: int, checkpoints: list[int], seed: int,
                  device: str, checkpoint_every_epochs: int, channels_last: bool, **recipe) -> None:
    """IGD's surrogate: `arch` trained on the whole training split (igd.train_surrogate) with the
    hard-label recipe (`recipe`: the fields of settings.Recipe), its weights kept at the epochs
    `checkpoints`; scored on the test split at those epochs (its record says how good a classifier
    the guidance follows)."""
    from .guidance.igd import train_surrogate
    from .settings import Recipe

    real, test_split = data.open_set(train), data.open_set(test)
    recipe = Recipe(**recipe)
    job = [recipe.params(), arch, epochs, checkpoints, seed, device]
    checkpointer = Checkpointer.next_to(surrogate, checkpoint_every_epochs, job, [train, test])
    saved = train_surrogate(recipe, real.images, real.labels, test_split.images, test_split.labels, arch=arch,
                            num_classes=len(real.class_names), epochs=epochs,
                            keep=checkpoints, seed=seed, device=pick_device(device, tf32=recipe.precision == "tf32"),
                            channels_last=channels_last, checkpointer=checkpointer,
                            trajectory=Path(f"{surrogate}.trajectory"))
    save_torch(saved, surrogate)
    checkpointer.remove()
    shutil.rmtree(f"{surrogate}.trajectory", ignore_errors=True)


def igd_gradients(*, train: str, surrogate: str, gradients: str, images_per_class: int, device: str) -> None:
    """Per class, its real gradient at each of the surrogate's kept checkpoints (igd.class_gradients
    over its first `images_per_class` training images), one file a class: `class<c>.pt`. One class
    in memory at a time; a killed job keeps its finished classes (in `<gradients>.partial`)."""
    from .guidance.igd import class_gradients

    real, saved = data.open_set(train), load_torch(surrogate)
    device = pick_device(device, tf32=False)
    partial = Path(f"{gradients}.partial")
    partial.mkdir(parents=True, exist_ok=True)
    for c in tqdm(range(len(real.class_names)), desc="IGD class gradients", mininterval=5):
        if not (partial / f"class{c}.pt").exists():
            images = real.by_class(c)[:images_per_class]
            # bfloat16 halves the disk (ImageNet-1K, ConvNet-6: 1000 classes x 4 x 2.8M values = 22 GB);
            # the guide computes its cosines in float32
            save_torch(class_gradients(saved, images, c, device).to(torch.bfloat16).cpu(), partial / f"class{c}.pt")
    shutil.rmtree(gradients, ignore_errors=True)
    partial.rename(gradients)


def select_random(*, train: str, pack: str, images: str, ipc: int, order: str, seed: int | None) -> None:
    """The `random` real set: the first `ipc` images of each class ("sorted", the reference's), or
    a seeded draw ("seeded")."""
    real = data.open_set(train)
    _check_ipc(real, ipc)
    index = sets.first_per_class(real.labels, ipc) if order == "sorted" else sets.random_subset(real.labels, ipc, seed)
    _save_subset(real, index, pack, images)


def select_coreset(*, train: str, features: str, pack: str, images: str, ipc: int, method: str) -> None:
    """Herding or k-center, per class, on the feature network's embedding of the training split."""
    from . import coreset  # scipy: a quarter second no other stage needs

    real = data.open_set(train)
    _check_ipc(real, ipc)
    embedding = load_torch(features)["features"].numpy()
    index = torch.from_numpy(coreset.select_per_class(embedding, real.labels.numpy(), ipc, method))
    _save_subset(real, index, pack, images)


def _check_ipc(real, ipc: int) -> None:
    """The workflow-start check counts files; this one counts the images prepare could read."""
    counts = torch.bincount(real.labels, minlength=len(real.class_names)).tolist()
    short = [f"'{name}' ({n})" for name, n in zip(real.class_names, counts) if n < ipc]
    if short:
        raise ValueError(f"ipcs: IPC {ipc} exceeds the readable training images of class {', '.join(short)} "
                         "(unreadable files were skipped: dataset.skip_bad_images)")


def _save_subset(real, index: torch.Tensor, pack_out: str, images_out: str) -> None:
    subset = data.RealPack(real.images[index], real.labels[index], real.class_names, real.class_ids)
    subset.save(pack_out)
    sets.write_image_folder(subset.images, subset.labels, subset.class_names, images_out)


def expand_set(*, train: str, generated: str, pack: str) -> None:
    """The full training split plus a generated set, for dataset expansion (Table 9)."""
    real, extra = data.open_set(train), data.RealPack.load(generated)
    data.RealPack(torch.cat([real.images[:], extra.images]), torch.cat([real.labels, extra.labels]),
                  real.class_names, real.class_ids).save(pack)


def feature_net(*, train: str, test: str, model: str, features: str, epochs: int, seed: int, device: str,
                **recipe) -> None:
    """The analyses' ResNetAP-10, trained on the whole training split at its own resolution with
    the hard-label recipe (`recipe`: the fields of settings.Recipe)."""
    from .settings import Recipe

    recipe = Recipe(**recipe)
    device = pick_device(device, tf32=recipe.precision == "tf32")
    train_pack, test_pack = data.open_set(train), data.open_set(test)
    net, record = train_feature_net(recipe, train_pack.images, train_pack.labels, test_pack.images,
                                    test_pack.labels, model, num_classes=len(train_pack.class_names), epochs=epochs,
                                    seed=seed, device=device)
    print(f"feature network: {record}")
    save_torch({"features": embed_images(net, train_pack.images, device), "labels": train_pack.labels}, features)


def analyze(*, pack: str, model: str, features: str, metrics: str, method: str, ipc: int, k: int,
            device: str) -> None:
    """Distribution metrics of one surrogate set against the full training split, in feature space."""
    from . import analysis

    device = pick_device(device, tf32=False)
    real = load_torch(features)["features"]
    fake = embed_images(load_feature_net(model, device), data.RealPack.load(pack).images, device)
    sigma = analysis.median_bandwidth(real, real[:0])  # one bandwidth, from the real data alone
    save_json({"method": method, "ipc": ipc, "mmd": analysis.mmd(real, fake, sigma), "bandwidth": sigma,
               **analysis.prdc(real, fake, k), "frechet": analysis.frechet_distance(real, fake)}, metrics)


def tsne(*, packs: list[str], model: str, features: str, figure: str, methods: list[str], ipc: int, seed: int,
         real_points: int, device: str) -> None:
    from . import figures

    device = pick_device(device, tf32=False)
    net = load_feature_net(model, device)
    points = {method: embed_images(net, data.RealPack.load(p).images, device).numpy()
              for method, p in zip(methods, packs)}
    real = load_torch(features)["features"].numpy()
    figures.plot_tsne(figures.tsne_embedding(real, points, seed=seed, max_real=real_points), figure, f"IPC {ipc}")


def validate(*, train: str, test: str, record: str, method: str, ipc: int | None, arch: str, seed: int, epochs: int,
             device: str, checkpoint_every_epochs: int, channels_last: bool, **protocol) -> None:
    """Train `arch` on the set `train` (a surrogate set, or the whole training split for `full`) and
    test it on the real test split, with the IDC protocol (validate.py). The rule `validate_full`
    runs this stage too."""
    validate_group(train=train, test=test, records=[record], method=method, ipc=ipc, arch=arch, seeds=[seed],
                   epochs=epochs, device=device, checkpoint_every_epochs=checkpoint_every_epochs,
                   channels_last=channels_last, **protocol)


def validate_group(*, train: str, test: str, records: list[str], method: str, ipc: int | None, arch: str,
                   seeds: list[int], epochs: int, device: str, checkpoint_every_epochs: int, channels_last: bool,
                   **protocol) -> None:
    """`validate` for every seed of a (method, IPC, net) in one process (validate.group_seeds): each
    run draws what it draws alone (classifier.py). `protocol`: the fields of settings.HardLabel.
    One resume checkpoint for the group."""
    from .settings import HardLabel
    from .validate import train_and_evaluate

    protocol = HardLabel(**protocol)
    train_pack, test_pack = data.open_set(train), data.open_set(test)  # a set, or the whole split (full)
    checkpointer = Checkpointer.next_to(records[0], checkpoint_every_epochs,
                                        [protocol.params(), arch, seeds, epochs, device], [train, test])
    results = train_and_evaluate(protocol, arch, train_pack.images, train_pack.labels, test_pack.images,
                                 test_pack.labels, num_classes=len(test_pack.class_names), seeds=seeds, epochs=epochs,
                                 device=pick_device(device, tf32=protocol.precision == "tf32"), mode="auto",
                                 channels_last=channels_last, progress=True,
                                 checkpointer=checkpointer)
    for record, result in zip(records, results, strict=True):
        save_record(record, method, ipc, result)
    checkpointer.remove()


def save_record(record: str, method: str, ipc: int | None, result: dict) -> None:
    """A validation run's record, refused when its accuracy is undefined (degenerate.py)."""
    refuse_undefined({k: result.get(k, float("nan")) for k in ("accuracy_last", "accuracy_best")}, made_by=record)
    save_json({"method": method, "ipc": ipc} | result | job_environment(), record)


def validate_soft_label(*, train: str, test: str, teacher: str, records: list[str], method: str, ipc: int, arch: str,
                        seeds: list[int], epochs: int, teacher_classes: int | None, device: str,
                        checkpoint_every_epochs: int, **protocol) -> None:
    """Train `arch` on the set `train` under RDED's soft-label protocol (softlabel.py), once per seed
    of `seeds` (one, or all of them with validate.group_seeds: each run draws what it draws alone),
    and test it on the real test split. `protocol`: the fields of settings.SoftLabel.
    `teacher_classes` None: the teacher is the feature network, whose outputs are the dataset's
    classes; else a torchvision ResNet-18 file with that many outputs: dataset class i is its output
    class_ids[i] (ImageNet-1k ids), or output i for a teacher of exactly the dataset's classes
    (RDED's subset teachers)."""
    from .settings import SoftLabel
    from .softlabel import load_teacher, train_soft_label

    protocol = SoftLabel(**protocol)
    train_pack, test_pack = data.RealPack.load(train), data.open_set(test)
    torch_device = pick_device(device, tf32=protocol.precision == "tf32")
    if teacher_classes is None:
        net, class_ids = load_feature_net(teacher, torch_device), None
    else:
        subset = teacher_classes == len(test_pack.class_names)
        net, class_ids = load_teacher(teacher, teacher_classes, torch_device), None if subset else test_pack.class_ids
    checkpointer = Checkpointer.next_to(records[0], checkpoint_every_epochs,
                                        [protocol.params(), arch, seeds, epochs, class_ids, device],
                                        [train, test, teacher])
    runs = train_soft_label(protocol, arch, train_pack.images, net, test_pack.images, test_pack.labels,
                            num_classes=len(test_pack.class_names), class_ids=class_ids, seeds=seeds, epochs=epochs,
                            device=torch_device, progress=True, checkpointer=checkpointer)
    for record, (_, result) in zip(records, runs, strict=True):
        save_record(record, method, ipc, result)
    checkpointer.remove()


def import_external(*, train: str, folder: str, pack: str, images: str, ipc: int, resolution: int,
                    channels: int) -> None:
    """A set distilled elsewhere (an ImageFolder of the dataset's classes), decoded like our own."""
    from .external import load_external_set

    real = data.open_set(train)
    imported = load_external_set(folder, real.class_names, resolution=resolution, channels=channels, ipc=ipc,
                                 class_ids=real.class_ids)
    imported.save(pack)
    sets.write_image_folder(imported.images, imported.labels, imported.class_names, images)


def table1(*, records: list[str], csv: str, md: str, plot: str, methods: list[str], ipcs: list[int],
           archs: list[str], resolution: int, report: str) -> None:
    from . import tables as paper_tables

    paper_tables.write_accuracy_table(records, csv, md, plot, methods, ipcs, archs, resolution, report)


def table4(*, records: list[str], csv: str, md: str, methods: list[str], ipcs: list[int], archs: list[str],
           resolution: int, report: str) -> None:
    from . import tables as paper_tables

    paper_tables.write_accuracy_table(records, csv, md, None, methods, ipcs, archs, resolution, report, "soft_label")


def scores(*, records: list[str], soft_records: list[str], no_augment_records: list[str], csv: str, md: str,
           leaderboard_csv: str, leaderboard_md: str, methods: list[str], ipcs: list[int], archs: list[str],
           resolution: int, report: str) -> None:
    from . import tables as paper_tables

    paper_tables.write_scores(records, soft_records, no_augment_records, csv, md, leaderboard_csv, leaderboard_md,
                              methods, ipcs, archs, resolution, report)


def study(*, records: list[str], timings: list[str], csv: str, md: str, plot: str, study: dict, points: list[str],
          resolution: int, report: str) -> None:
    from . import tables as paper_tables

    paper_tables.write_study(records, timings, csv, md, plot, study, points, resolution, report)


def table5(*, records: list[str], csv: str, md: str, methods: list[str], forms: dict, ipcs: list[int],
           archs: list[str], resolution: int, report: str) -> None:
    from . import tables as paper_tables

    paper_tables.write_table5(records, csv, md, methods, forms, ipcs, archs, resolution, report)


def table9(*, records: list[str], csv: str, md: str, resolution: int, report: str) -> None:
    from . import tables as paper_tables

    paper_tables.write_table9(records, csv, md, resolution, report)


def analysis_tables(*, records: list[str], table2: str, table2_md: str, table10: str, table10_md: str,
                    methods: list[str], ipcs: list[int]) -> None:
    from . import tables as paper_tables

    paper_tables.write_analysis_tables(records, (table2, table2_md), (table10, table10_md), methods, ipcs)


def loss_curves(*, losses: list[str], figure: str, methods: list[str]) -> None:
    from . import figures

    figures.plot_loss_curves(dict(zip(methods, losses)), figure)


def validation_curves(*, records: list[str], figure: str, methods: list[str], archs: list[str], ipc: int,
                      resolution: int) -> None:
    from . import figures

    figures.plot_validation_curves(records, figure, methods, archs, f"IPC {ipc}", resolution)


def sample_grid(*, packs: list[str], figure: str, methods: list[str], per_class: int, imagenet_wnids: str,
                imagenet_names: str) -> None:
    from . import figures

    sets = {m: data.RealPack.load(p) for m, p in zip(methods, packs)}
    labels = data.readable_class_names(next(iter(sets.values())).class_names, imagenet_wnids, imagenet_names)
    figures.plot_sample_grid(sets, figure, per_class, labels)

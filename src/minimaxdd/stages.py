"""One function per workflow stage: paths and settings in, artifacts out (written atomically).

The package knows nothing of Snakemake: each `workflow/scripts/*.py` unpacks the job's input,
output and params and calls one of these. Every job is a fresh process, so the heavy imports
(diffusers, scikit-learn, matplotlib: seconds each) stay inside the stages that need them.
"""

from __future__ import annotations

import csv
import json
import time
from pathlib import Path

import torch

from . import checkpoints, coreset, data, parallel, sets
from .dit import DiT, DiTConfig
from .features import embed_images, load_feature_net, train_feature_net
from .io import atomic_path, job_environment, load_torch, pick_device, save_json, save_torch
from .resume import Checkpointer
from .training import LatentSet, finetune_dit, pretrain_dit
from .validate import train_and_evaluate


def prepare(dataset: dict, train_out: str, test_out: str) -> None:
    for split, out in (("train", train_out), ("test", test_out)):
        data.load_split(dataset, split).save(out)


def train_base_vae(train_pack: str, out_folder: str, settings: dict, seed: int, device: str) -> None:
    from .vae import save_vae, train_tiny_vae

    pack = data.RealPack.load(train_pack)
    vae = train_tiny_vae(pack.images, seed=seed, device=pick_device(device), **settings)
    save_vae(vae, out_folder)


def encode(train_pack: str, vae_path: str, out: str, batch_size: int, device: str) -> None:
    from .pretrained import resolve_vae_folder
    from .vae import encode_images, load_vae

    device = pick_device(device)
    pack = data.RealPack.load(train_pack)
    cache = encode_images(load_vae(resolve_vae_folder(vae_path), device), pack.images, batch_size, device)
    save_torch(cache | {"labels": pack.labels, "class_ids": pack.class_ids, "class_names": pack.class_names}, out)


def train_base_dit(latents_file: str, out_folder: str, settings: dict, seed: int, device: str,
                   checkpoint_every: int = 200) -> None:
    device = pick_device(device)
    cache = load_torch(latents_file)
    settings = dict(settings)
    training = {k: settings.pop(k) for k in ("steps", "batch_size", "lr", "ema_decay")}
    channels, size = cache["mean"].shape[2], cache["mean"].shape[-1]
    torch.manual_seed(seed)
    model = DiT(DiTConfig(input_size=size, in_channels=channels, num_classes=max(cache["class_ids"]) + 1, **settings))
    latents = LatentSet(cache, device)
    checkpointer = Checkpointer.next_to(out_folder, checkpoint_every, [settings, training, seed, str(device)],
                                        [latents_file])
    checkpoints.save_dit(pretrain_dit(model, latents, seed=seed, device=device, checkpointer=checkpointer, **training),
                         out_folder)
    checkpointer.remove()


def finetune(latents_file: str, dit_path: str, weights_out: str, losses_out: str, method: str,
             classes: list[int] | None, settings: dict, device: str, checkpoint_every: int = 200) -> None:
    """Fine-tune on the training latents of `classes` (all when None: a phase of ImageNet-100 is a
    subset). `settings`: config["finetune"] with the method's overrides and its two criteria forms.
    With `gpus` > 1 the job runs as that many data-parallel processes; rank 0 writes the outputs."""
    settings = {k: v for k, v in settings.items() if k != "classes_per_phase"}
    gpus = settings.pop("gpus", 1)
    job = (latents_file, dit_path, weights_out, losses_out, method, classes, settings, checkpoint_every)
    if gpus == 1:
        _finetune_rank(0, 1, pick_device(device), *job)
    else:
        parallel.spawn(_finetune_rank, gpus, pick_device(device), *job)


def _finetune_rank(rank: int, world_size: int, device: torch.device, latents_file: str, dit_path: str,
                   weights_out: str, losses_out: str, method: str, classes: list[int] | None, settings: dict,
                   checkpoint_every: int) -> None:
    from .pretrained import load_pretrained_dit

    model = load_pretrained_dit(dit_path, device)
    latents = LatentSet(load_torch(latents_file), device, classes)
    checkpointer = Checkpointer.next_to(weights_out, checkpoint_every,
                                        [method, classes, settings, world_size, device.type], [latents_file, dit_path])
    start = time.time()
    model_params, ema_params, rows = finetune_dit(model, latents, device=device, checkpointer=checkpointer,
                                                  **settings)
    if rank != 0:
        return
    checkpoints.save_difffit(model_params, ema_params, weights_out,
                             {"method": method, "steps": len(rows), "processes": world_size,
                              "wall_s": round(time.time() - start, 1)})
    with atomic_path(losses_out) as tmp, open(tmp, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    checkpointer.remove()


def generate(dit_path: str, vae_path: str, weights: list[str], phases: list, train_pack: str, pack_out: str,
             images_out: str | None, timing_out: str, ipc: int, settings: dict, device: str,
             classes: list[int] | None = None) -> None:
    """`weights`: the fine-tuned Difffit delta of each class phase (`phases`: the class indices of
    each, None = all classes), or no weights for the plain base DiT. `classes`: only these class
    indices (one chunk of a set scattered over jobs, joined by `gather_generated`; each phase then
    generates its classes in the chunk); `images_out` None: no PNG folder (the gather writes it)."""
    from .generate import generate_set
    from .pretrained import load_pretrained_dit, resolve_vae_folder
    from .vae import load_vae

    device = pick_device(device)
    real = data.RealPack.load(train_pack)
    vae = load_vae(resolve_vae_folder(vae_path), device)
    start = time.time()
    model = load_pretrained_dit(dit_path, device)
    parts = []
    for delta, phase in zip(weights, phases) if weights else [(None, None)]:
        if classes is not None:
            phase = list(classes) if phase is None else [c for c in phase if c in classes]
            if not phase:
                continue
        if delta:  # every delta holds the same Difffit parameters, so each one fully replaces the last
            checkpoints.apply_difffit(model, delta)
        parts.append(generate_set(model, vae, class_ids=real.class_ids, ipc=ipc, device=device, classes=phase,
                                  **settings))
    images, labels = torch.cat([p[0] for p in parts]), torch.cat([p[1] for p in parts])
    wall_s = time.time() - start
    pack = data.RealPack(images, labels, real.class_names, real.class_ids)
    pack.save(pack_out)
    if images_out is not None:
        sets.write_image_folder(images, labels, real.class_names, images_out)
    chunk = {} if classes is None else {"classes": [int(c) for c in classes]}
    save_json({"images": len(images), "wall_s": wall_s, "seconds_per_image": wall_s / len(images),
               "device": str(device), **chunk, **settings, **job_environment()}, timing_out)


def gather_generated(chunk_packs: list[str], chunk_timings: list[str], pack_out: str, images_out: str,
                     timing_out: str) -> None:
    """Join the class chunks of a scattered generation into the set one job would have written: the
    same pack (noise depends only on (seed, class, index)), images and run record, whose wall time
    and images are the chunks' sums; `chunks` lists each job's classes, images, time and host."""
    packs = [data.RealPack.load(p) for p in chunk_packs]
    first = packs[0]
    seen = set()
    for path, pack in zip(chunk_packs, packs):
        if pack.class_names != first.class_names or pack.class_ids != first.class_ids:
            raise ValueError(f"{path}: classes differ from those of {chunk_packs[0]}")
        present = set(pack.labels.unique().tolist())
        if present & seen:
            raise ValueError(f"{path}: classes {sorted(present & seen)} are also in another chunk")
        seen |= present
    images, labels = torch.cat([p.images for p in packs]), torch.cat([p.labels for p in packs])
    data.RealPack(images, labels, first.class_names, first.class_ids).save(pack_out)
    sets.write_image_folder(images, labels, first.class_names, images_out)

    records = [json.loads(Path(p).read_text()) for p in chunk_timings]
    per_job = ("images", "wall_s", "seconds_per_image", "classes", "host", "slurm_job_id")
    wall_s = sum(r["wall_s"] for r in records)
    save_json({**{k: v for k, v in records[0].items() if k not in per_job},
               "images": len(images), "wall_s": wall_s, "seconds_per_image": wall_s / len(images),
               "chunks": [{k: r.get(k) for k in ("classes", "images", "wall_s", "host", "slurm_job_id")}
                          for r in records],
               **job_environment()}, timing_out)


def select_random(train_pack: str, pack_out: str, images_out: str, ipc: int, seed: int) -> None:
    real = data.RealPack.load(train_pack)
    _check_ipc(real, ipc)
    _save_subset(real, sets.random_subset(real.labels, ipc, seed), pack_out, images_out)


def select_coreset(train_pack: str, features_file: str, pack_out: str, images_out: str, ipc: int,
                   method: str) -> None:
    """Herding or k-center, per class, on the feature network's embedding of the training split."""
    real = data.RealPack.load(train_pack)
    _check_ipc(real, ipc)
    features = load_torch(features_file)["features"].numpy()
    index = torch.from_numpy(coreset.select_per_class(features, real.labels.numpy(), ipc, method))
    _save_subset(real, index, pack_out, images_out)


def _check_ipc(real: data.RealPack, ipc: int) -> None:
    """The workflow-start check counts files; this one counts the images prepare could read."""
    counts = torch.bincount(real.labels, minlength=len(real.class_names)).tolist()
    short = [f"'{name}' ({n})" for name, n in zip(real.class_names, counts) if n < ipc]
    if short:
        raise ValueError(f"ipcs: IPC {ipc} exceeds the readable training images of class {', '.join(short)} "
                         "(unreadable files were skipped: dataset.skip_bad_images)")


def _save_subset(real: data.RealPack, index: torch.Tensor, pack_out: str, images_out: str) -> None:
    subset = data.RealPack(real.images[index], real.labels[index], real.class_names, real.class_ids)
    subset.save(pack_out)
    sets.write_image_folder(subset.images, subset.labels, subset.class_names, images_out)


def expand_set(train_pack: str, set_pack: str, pack_out: str) -> None:
    """The full training split plus a generated set, for dataset expansion (Table 9)."""
    real, extra = data.RealPack.load(train_pack), data.RealPack.load(set_pack)
    data.RealPack(torch.cat([real.images, extra.images]), torch.cat([real.labels, extra.labels]),
                  real.class_names, real.class_ids).save(pack_out)


def feature_net(train_pack: str, test_pack: str, model_out: str, features_out: str, settings: dict,
                device: str) -> None:
    device = pick_device(device)
    train, test = data.RealPack.load(train_pack), data.RealPack.load(test_pack)
    model, record = train_feature_net(train.images, train.labels, test.images, test.labels, model_out,
                                      num_classes=len(train.class_names), device=device, **settings)
    print(f"feature network: {record}")
    features = embed_images(model, train.images, device)
    save_torch({"features": features, "labels": train.labels}, features_out)


def analyze(set_pack: str, feature_net_file: str, features_file: str, out: str, *, record: dict, k: int,
            device: str) -> None:
    """Distribution metrics of one surrogate set against the full training split, in feature space."""
    from . import analysis

    device = pick_device(device)
    real = load_torch(features_file)["features"]
    fake = embed_images(load_feature_net(feature_net_file, device), data.RealPack.load(set_pack).images, device)
    sigma = analysis.median_bandwidth(real, real[:0])  # one bandwidth, from the real data alone
    metrics = {"mmd": analysis.mmd(real, fake, sigma), "bandwidth": sigma, **analysis.prdc(real, fake, k),
               "frechet": analysis.frechet_distance(real, fake)}
    save_json(record | metrics, out)


def tsne(set_packs: dict[str, str], feature_net_file: str, features_file: str, out: str, *, title: str,
         seed: int, device: str) -> None:
    from . import figures

    device = pick_device(device)
    model = load_feature_net(feature_net_file, device)
    points = {method: embed_images(model, data.RealPack.load(p).images, device).numpy()
              for method, p in set_packs.items()}
    real = load_torch(features_file)["features"].numpy()
    figures.plot_tsne(figures.tsne_embedding(real, points, seed=seed), out, title)


def validate(set_pack: str, test_pack: str, out: str, *, arch: str, seed: int, epochs: int, batch_size: int,
             lr: float, width_factor: float, record: dict, device: str, checkpoint_every: int = 10) -> None:
    train, test = data.RealPack.load(set_pack), data.RealPack.load(test_pack)
    settings = dict(arch=arch, num_classes=len(test.class_names), epochs=epochs, seed=seed, batch_size=batch_size,
                    lr=lr, width_factor=width_factor)
    checkpointer = Checkpointer.next_to(out, checkpoint_every, [settings, device], [set_pack, test_pack])
    result = train_and_evaluate(train.images, train.labels, test.images, test.labels, device=pick_device(device),
                                checkpointer=checkpointer, **settings)
    save_json(record | result | job_environment(), out)
    checkpointer.remove()


def make_tables(records: list[str], out_dir: str, methods: list[str], ipcs: list[int], archs: list[str],
                resolution: int) -> None:
    from . import tables

    tables.write_table1(records, Path(out_dir), methods, ipcs, archs, resolution)


def study_table(records: list[str], timings: list[str], out_csv: str, study: dict, points: list[str],
                resolution: int) -> None:
    from . import tables

    tables.write_study(records, timings, Path(out_csv), study, points, resolution)


def table5(records: list[str], out_csv: str, methods: list[str], forms: dict, ipcs: list[int], archs: list[str],
           resolution: int) -> None:
    from . import tables

    tables.write_table5(records, Path(out_csv), methods, forms, ipcs, archs, resolution)


def table9(records: list[str], out_csv: str, resolution: int) -> None:
    from . import tables

    tables.write_table9(records, Path(out_csv), resolution)


def make_analysis_tables(records: list[str], out_dir: str, methods: list[str], ipcs: list[int]) -> None:
    from . import tables

    tables.write_analysis_tables(records, Path(out_dir), methods, ipcs)


def loss_curves(loss_files: dict[str, str], out: str) -> None:
    from . import figures

    figures.plot_loss_curves(loss_files, out)


def sample_grid(set_packs: dict[str, str], out: str, per_class: int) -> None:
    from . import figures

    figures.plot_sample_grid({m: data.RealPack.load(p) for m, p in set_packs.items()}, out, per_class)

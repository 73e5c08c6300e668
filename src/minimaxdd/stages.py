"""One function per workflow stage: paths and settings in, artifacts out (written atomically).

The package knows nothing of Snakemake: each `workflow/scripts/*.py` unpacks the job's input,
output and params and calls one of these.
"""

from __future__ import annotations

import csv
import time
from pathlib import Path

import torch

from . import checkpoints, data, sets, tables
from .dit import DiT, DiTConfig
from .generate import generate_set
from .io import atomic_path, load_torch, pick_device, save_json, save_torch
from .training import LatentSet, finetune_dit, pretrain_dit
from .validate import train_and_evaluate
from .vae import encode_images, load_vae, save_vae, train_tiny_vae


def prepare(dataset: dict, train_out: str, test_out: str) -> None:
    for split, out in (("train", train_out), ("test", test_out)):
        data.load_split(dataset, split).save(out)


def train_base_vae(train_pack: str, out_folder: str, settings: dict, seed: int, device: str) -> None:
    pack = data.RealPack.load(train_pack)
    vae = train_tiny_vae(pack.images, seed=seed, device=pick_device(device), **settings)
    save_vae(vae, out_folder)


def encode(train_pack: str, vae_folder: str, out: str, batch_size: int, device: str) -> None:
    device = pick_device(device)
    pack = data.RealPack.load(train_pack)
    cache = encode_images(load_vae(vae_folder, device), pack.images, batch_size, device)
    save_torch(cache | {"labels": pack.labels, "class_ids": pack.class_ids, "class_names": pack.class_names}, out)


def train_base_dit(latents_file: str, out_folder: str, settings: dict, seed: int, device: str) -> None:
    device = pick_device(device)
    cache = load_torch(latents_file)
    settings = dict(settings)
    training = {k: settings.pop(k) for k in ("steps", "batch_size", "lr", "ema_decay")}
    channels, size = cache["mean"].shape[2], cache["mean"].shape[-1]
    torch.manual_seed(seed)
    model = DiT(DiTConfig(input_size=size, in_channels=channels, num_classes=max(cache["class_ids"]) + 1, **settings))
    latents = LatentSet(cache, device)
    checkpoints.save_dit(pretrain_dit(model, latents, seed=seed, device=device, **training), out_folder)


def finetune(latents_file: str, dit_folder: str, weights_out: str, losses_out: str, method: str,
             settings: dict, device: str) -> None:
    device = pick_device(device)
    model = checkpoints.load_dit(dit_folder, device)
    latents = LatentSet(load_torch(latents_file), device)
    start = time.time()
    model_params, ema_params, rows = finetune_dit(model, latents, method=method, device=device, **settings)
    checkpoints.save_difffit(model_params, ema_params, weights_out,
                             {"method": method, "steps": len(rows), "wall_s": round(time.time() - start, 1)})
    with atomic_path(losses_out) as tmp, open(tmp, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)


def generate(dit_folder: str, vae_folder: str, weights: str | None, train_pack: str, pack_out: str,
             images_out: str, ipc: int, settings: dict, device: str) -> None:
    """`weights` is the fine-tuned Difffit delta, or None for the plain base DiT."""
    device = pick_device(device)
    model = checkpoints.load_dit(dit_folder, device)
    if weights:
        checkpoints.apply_difffit(model, weights)
    real = data.RealPack.load(train_pack)
    start = time.time()
    images, labels = generate_set(model, load_vae(vae_folder, device), class_ids=real.class_ids, ipc=ipc,
                                  device=device, **settings)
    pack = data.RealPack(images, labels, real.class_names, real.class_ids)
    pack.save(pack_out)
    sets.write_image_folder(images, labels, real.class_names, images_out)
    print(f"generated {len(images)} images in {time.time() - start:.1f} s")


def select_random(train_pack: str, pack_out: str, images_out: str, ipc: int, seed: int) -> None:
    real = data.RealPack.load(train_pack)
    index = sets.random_subset(real.labels, ipc, seed)
    data.RealPack(real.images[index], real.labels[index], real.class_names, real.class_ids).save(pack_out)
    sets.write_image_folder(real.images[index], real.labels[index], real.class_names, images_out)


def validate(set_pack: str, test_pack: str, out: str, *, arch: str, seed: int, epochs: int, batch_size: int,
             lr: float, width_factor: float, record: dict, device: str) -> None:
    train, test = data.RealPack.load(set_pack), data.RealPack.load(test_pack)
    result = train_and_evaluate(train.images, train.labels, test.images, test.labels, arch=arch,
                                num_classes=len(test.class_names), epochs=epochs, seed=seed,
                                device=pick_device(device), batch_size=batch_size, lr=lr,
                                width_factor=width_factor)
    save_json(record | result, out)


def make_tables(records: list[str], out_dir: str, methods: list[str], ipcs: list[int], archs: list[str],
                resolution: int) -> None:
    tables.write_table1(records, Path(out_dir), methods, ipcs, archs, resolution)

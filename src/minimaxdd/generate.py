"""Generating a surrogate set: guided ancestral sampling in latent space, then VAE decoding.

The noise of image i of class c (its starting point and the noise of every reverse step) is drawn
from a generator seeded by (seed, c, i) alone, so the first k images of an IPC-n set are exactly
the IPC-k set (except under MGD3's mode guidance, whose modes depend on the IPC), whatever the
batch size or device, and a set generated in class chunks over several
jobs (`generate.classes_per_job`, joined by `stages.gather_generated`) is the set one job generates.
A guide whose images depend on earlier ones (IGD: image i of class c on the class's images 0..i-1)
orders the batches so that this holds whatever the batch size or chunking (`Guide.batches`).
"""

from __future__ import annotations

import hashlib

import torch
from tqdm import tqdm

from .diffusion import GaussianDiffusion, sample_latents
from .dit import DiT
from .guidance import NO_GUIDE, Guide
from .io import autocast
from .vae import decode_latents


def image_seed(seed: int, class_index: int, image_index: int) -> int:
    digest = hashlib.sha256(f"{seed}/{class_index}/{image_index}".encode()).digest()
    return int.from_bytes(digest[:8], "little") & (2**63 - 1)


def image_noise(seed: int, class_index: int, image_index: int, steps: int, shape: tuple) -> torch.Tensor:
    """(steps + 1, *shape) standard normal noise, a pure function of its arguments."""
    generator = torch.Generator().manual_seed(image_seed(seed, class_index, image_index))
    return torch.randn((steps + 1, *shape), generator=generator)


@torch.no_grad()
def generate_set(model: DiT, vae, *, class_ids: list[int], ipc: int, steps: int, guidance_scale: float,
                 guidance_channels: int | None, precision: str, sampler: str, batch_size: int | str, seed: int,
                 device: torch.device, eta: float = 0.0, classes: list[int] | None = None,
                 guide: Guide = NO_GUIDE, compile: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """`ipc` images of each of `classes` (default: all); returns uint8 images (n*ipc, C, H, W) and
    their labels (indices into class_ids, the generator's id of each class). `guide`: a
    training-free guidance method (guidance.Guide), which also says how images go into batches."""
    model = model.to(device).eval()
    diffusion = GaussianDiffusion.respaced(steps, sampler=sampler).to(device)
    latent_shape = (model.in_channels, model.config.input_size, model.config.input_size)
    classes = range(len(class_ids)) if classes is None else classes
    jobs = [(c, i) for c in classes for i in range(ipc)]
    if batch_size == "auto":
        guide.begin_batch([(classes[0], 0)] * AUTO_PROBE)
        batch_size = fitting_batch_size(model, vae, latent_shape, precision, device, guide)
        print(f"generate.batch_size auto: {batch_size} images a batch on {device}")
    position = {job: n for n, job in enumerate(jobs)}  # where each image goes in the set (class-major)
    images = None  # the set, filled batch by batch (no list and joined copy: one set in memory)
    for batch in tqdm(guide.batches(list(classes), ipc, batch_size), desc=f"generate ipc={ipc}", mininterval=5):
        guide.begin_batch(batch)
        noise = torch.stack([image_noise(seed, c, i, steps, latent_shape) for c, i in batch], dim=1).to(device)
        labels = torch.tensor([class_ids[c] for c, _ in batch], device=device)
        latents = sample_latents(model, diffusion, labels, noise, guidance_scale, guidance_channels=guidance_channels,
                                 precision=precision, sampler=sampler, eta=eta, guide=guide, compile=compile)
        diverged = [job for job, finite in zip(batch, torch.isfinite(latents).flatten(1).all(1).tolist()) if not finite]
        if diverged:  # such an image decodes to one flat value: a set of them is no result
            raise FloatingPointError(f"generate: the sampler diverged (non-finite latents) for {len(diverged)} images, "
                                     f"first class {diverged[0][0]} image {diverged[0][1]}; lower the guidance's scales "
                                     "(the method's guidance section: mgd3, igd, a plug-in's) or generate.guidance_scale")
        guide.end_batch(latents)
        decoded = decode_latents(vae, latents)
        if images is None:
            images = torch.empty((len(jobs), *decoded.shape[1:]), dtype=decoded.dtype)
        images[[position[job] for job in batch]] = decoded
    labels = torch.tensor([c for c, _ in jobs], dtype=torch.long)
    return images, labels


AUTO_BATCH_CPU = 64  # host memory is not what limits a CPU's batch; larger ones only page-fault more
MEMORY_SHARE = 0.8  # of the device's free memory: room for the allocator's fragmentation
AUTO_PROBE = 4  # images of the probe batch


@torch.no_grad()
def fitting_batch_size(model: DiT, vae, latent_shape: tuple, precision: str, device: torch.device,
                       guide: Guide, probe: int = AUTO_PROBE) -> int:
    """`generate.batch_size: auto`: on CUDA, the most images a batch whose guided denoising step,
    guide's mean shift (for a probe batch it was told of) and decoding fit in 80 % of the free
    device memory, from the peak memory of a probe batch; on the CPU, 64."""
    if device.type != "cuda":
        return AUTO_BATCH_CPU
    torch.cuda.empty_cache()
    free, _ = torch.cuda.mem_get_info(device)
    torch.cuda.reset_peak_memory_stats(device)
    before = torch.cuda.memory_allocated(device)
    x = torch.randn(probe, *latent_shape, device=device)
    labels = torch.zeros(probe, dtype=torch.long, device=device)
    with autocast(device, precision):
        model.forward_with_guidance(x, torch.zeros_like(labels), labels, 4.0)
    decode_latents(vae, x)
    one = torch.ones((), device=device)
    guide.mean_shift(x, one, one)
    per_image = (torch.cuda.max_memory_allocated(device) - before) / probe
    return max(1, int(MEMORY_SHARE * free / per_image))

"""The image autoencoder: a diffusers AutoencoderKL, pretrained (local folder) or a tiny one trained here.

Both kinds are stored and loaded as a diffusers folder, so later stages never care which one it is.
"""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F
from diffusers import AutoencoderKL
from tqdm import tqdm

from .io import ARTIFACT_SUFFIXES, atomic_dir, verify
from .pretrained import vae_norm_groups


def to_model_range(images_uint8: torch.Tensor) -> torch.Tensor:
    return images_uint8.float().div(127.5).sub(1.0)


def to_uint8(images: torch.Tensor) -> torch.Tensor:
    """[-1, 1] decoder output -> uint8 as the reference saves its samples: torchvision's save_image
    with normalize=True, value_range=(-1, 1) (MD sample.py L88-90; torchvision 0.14 utils.py L84-86,
    L149): clamp, (x + 1) / 2, x 255 + 0.5, truncated (round half up)."""
    return images.clamp(-1, 1).add(1).div(2).mul(255).add(0.5).clamp(0, 255).to(torch.uint8)


def build_tiny_vae(channels: int, resolution: int, block_channels: list[int], latent_channels: int) -> AutoencoderKL:
    """A small AutoencoderKL: one 2x downsampling per block after the first."""
    blocks = len(block_channels)
    return AutoencoderKL(
        in_channels=channels,
        out_channels=channels,
        down_block_types=("DownEncoderBlock2D",) * blocks,
        up_block_types=("UpDecoderBlock2D",) * blocks,
        block_out_channels=tuple(block_channels),
        layers_per_block=1,
        latent_channels=latent_channels,
        norm_num_groups=vae_norm_groups(block_channels),
        sample_size=resolution,
    )


def train_tiny_vae(
    images: torch.Tensor,
    *,
    block_channels: list[int],
    latent_channels: int,
    steps: int,
    batch_size: int,
    lr: float,
    kl_weight: float,
    seed: int,
    device: torch.device,
) -> AutoencoderKL:
    """Reconstruction (L1 + MSE) with a small KL term; then sets `scaling_factor` to 1 / latent std."""
    torch.manual_seed(seed)
    vae = build_tiny_vae(images.shape[1], images.shape[-1], block_channels, latent_channels).to(device)
    opt = torch.optim.AdamW(vae.parameters(), lr=lr)
    data = to_model_range(images).to(device)
    vae.train()
    for _ in tqdm(range(steps), desc="train tiny VAE", mininterval=5):
        x = data[torch.randint(len(data), (batch_size,), device=device)]
        x = torch.where(torch.rand(len(x), 1, 1, 1, device=device) < 0.5, x.flip(-1), x)
        posterior = vae.encode(x).latent_dist
        recon = vae.decode(posterior.sample()).sample
        loss = F.l1_loss(recon, x) + F.mse_loss(recon, x) + kl_weight * posterior.kl().mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    vae.eval()
    # As for Stable Diffusion's VAE: scale latents to unit variance for the diffusion model.
    with torch.no_grad():
        latents = torch.cat([vae.encode(chunk).latent_dist.mean for chunk in data[:1024].split(256)])
    vae.register_to_config(scaling_factor=float(1.0 / latents.std()))
    return vae


def save_vae(vae: AutoencoderKL, folder: str | Path) -> None:
    with atomic_dir(folder) as tmp:
        vae.save_pretrained(tmp, safe_serialization=True)


def load_vae(folder: str | Path, device: torch.device) -> AutoencoderKL:
    """Load a diffusers-format AutoencoderKL from a local folder (never from a hub)."""
    folder = Path(folder)
    if not (folder / "config.json").is_file():
        raise FileNotFoundError(f"no diffusers AutoencoderKL in {folder} (config.json missing)")
    for file in folder.iterdir():  # a base VAE trained here has checksums; a user's has none
        if file.suffix in ARTIFACT_SUFFIXES and not file.name.startswith("."):
            verify(file)
    # low_cpu_mem_usage=False: the default asks for `accelerate` and warns without it.
    return AutoencoderKL.from_pretrained(folder, local_files_only=True, low_cpu_mem_usage=False).to(device).eval()


@torch.no_grad()
def encode_images(vae: AutoencoderKL, images: torch.Tensor, batch_size: int, device: torch.device) -> dict:
    """Mean and std of the latent distribution of every image and of its horizontal flip.

    Returns tensors of shape (N, 2, C, h, w) (index 1 = flipped), stored in float16 to halve the
    cache; fine-tuning samples z = (mean + std * noise) * scaling_factor from them.
    """
    means, stds = [], []
    for batch in tqdm(images.split(batch_size), desc="encode", mininterval=5):
        x = to_model_range(batch).to(device)
        x = torch.cat([x, x.flip(-1)])
        dist = vae.encode(x).latent_dist
        n = len(batch)
        means.append(torch.stack([dist.mean[:n], dist.mean[n:]], 1).half().cpu())
        stds.append(torch.stack([dist.std[:n], dist.std[n:]], 1).half().cpu())
    return {
        "mean": torch.cat(means),
        "std": torch.cat(stds),
        "scaling_factor": float(vae.config.scaling_factor),
    }


@torch.no_grad()
def decode_latents(vae: AutoencoderKL, latents: torch.Tensor) -> torch.Tensor:
    """Scaled latents -> uint8 images."""
    return to_uint8(vae.decode(latents / vae.config.scaling_factor).sample).cpu()

"""Pixel pipeline of the IDC validation protocol, vectorised over a batch on its device.

IDC (snu-mllab/Efficient-Dataset-Condensation, which the paper's code vimar-gu/MinimaxDiffusion
copies unchanged in data.py and misc/utils.py) trains on ImageNet subsets with, per image,
  ToTensor -> RandomResizedCrop(scale 0.5-1) -> horizontal flip -> ColorJitter(0.4, 0.4, 0.4)
  -> Lighting(0.1, ImageNet PCA) -> Normalize(ImageNet mean / std)      (IDC data.py L291-320)
and then CutMix on the batch (IDC train.py L200-212). The augmentations here act on [0, 1]
pixels, before `normalize`; every random draw comes from the `generator` a function is given,
by default (None) torch's global RNG, so `torch.manual_seed` in the caller makes a run
repeatable. A generator seeded as the global RNG gives the same draws, in the same order, as the
global RNG: the classifier loop (classifier.py) gives each of its runs its own generators so that its
draws are those of the run trained alone. `generator` lives on the images' device; `cutmix` also
draws scalars on the CPU, from `cpu_generator` (None: `generator` when that is a CPU generator,
else the global CPU RNG), as a run trained alone draws them from the global CPU RNG.
"""

from __future__ import annotations

import functools
import math

import torch
from torch.nn import functional as F

CROP_TRIES = 10  # as torchvision's RandomResizedCrop
AUGMENTS = ("idc", "crop_flip", "none")

# Per-channel pixel statistics (IDC data.py L15-16). "half" maps [0, 1] to [-1, 1].
# Gray images under "imagenet" take the mean of the three channels' values (our choice: IDC has none).
NORMALIZATIONS = {"imagenet": ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225)),
                  "half": ((0.5, 0.5, 0.5), (0.5, 0.5, 0.5))}

# AlexNet-style PCA lighting noise of ImageNet pixels (IDC data.py L292-298).
LIGHTING_STD = 0.1
EIGVAL = (0.2175, 0.0188, 0.0045)
EIGVEC = ((-0.5675, 0.7192, 0.4009),
          (-0.5808, -0.0045, -0.8140),
          (-0.5836, -0.6948, 0.4203))
GRAY_WEIGHTS = (0.299, 0.587, 0.114)  # IDC misc/utils.py L234


def normalize(x: torch.Tensor, kind: str = "imagenet") -> torch.Tensor:
    """(x - mean) / std per channel of [0, 1] images, with the statistics `NORMALIZATIONS[kind]`."""
    if kind not in NORMALIZATIONS:
        raise ValueError(f"unknown normalization {kind!r}; valid names: {', '.join(NORMALIZATIONS)}")
    mean, std = (constant(v, x) for v in NORMALIZATIONS[kind])
    if x.shape[1] == 1:
        mean, std = mean.mean(0, keepdim=True), std.mean(0, keepdim=True)
    return (x - mean[:, None, None]) / std[:, None, None]


def constant(values: tuple, like: torch.Tensor) -> torch.Tensor:
    """`values` as a tensor on the device and in the dtype of `like`, made once: built from a list
    on CUDA, it would be copied from the host with a wait for the device at every step."""
    return _constant(values, like.device, like.dtype)


@functools.cache
def _constant(values: tuple, device: torch.device, dtype: torch.dtype) -> torch.Tensor:
    return torch.tensor(values, device=device, dtype=dtype)


def random_resized_crop(x: torch.Tensor, scale: tuple[float, float] = (0.5, 1.0),
                        ratio: tuple[float, float] = (3 / 4, 4 / 3),
                        generator: torch.Generator | None = None) -> torch.Tensor:
    """Crop a random box of each image and resize it back to H x W (bilinear).

    Boxes follow torchvision's RandomResizedCrop: area fraction uniform in `scale`, aspect ratio
    log-uniform in `ratio`, the first of 10 draws that fits the image (else the whole image),
    placed uniformly. Scale (0.5, 1.0) is IDC's (data.py L304). The box is continuous, not
    rounded to whole pixels as torchvision's.
    """
    n, _, h, w = x.shape
    area = torch.empty(n, CROP_TRIES, device=x.device).uniform_(*scale, generator=generator)
    aspect = torch.empty(n, CROP_TRIES, device=x.device).uniform_(*map(math.log, ratio), generator=generator).exp()
    box_w = (area * aspect * h / w).sqrt()  # box sides as fractions of the image sides
    box_h = (area / aspect * w / h).sqrt()
    fits = (box_w <= 1) & (box_h <= 1)
    first = fits.int().argmax(dim=1, keepdim=True)
    any_fits = fits.any(dim=1)
    box_w = box_w.gather(1, first).squeeze(1).where(any_fits, 1.0)
    box_h = box_h.gather(1, first).squeeze(1).where(any_fits, 1.0)
    # affine_grid works in [-1, 1] coordinates: the box centre may move by 1 - box side
    centre = (torch.rand(n, 2, device=x.device, generator=generator) * 2 - 1) * torch.stack([1 - box_w, 1 - box_h], 1)
    theta = torch.zeros(n, 2, 3, device=x.device)
    theta[:, 0, 0], theta[:, 1, 1], theta[:, :, 2] = box_w, box_h, centre
    grid = F.affine_grid(theta.to(x.dtype), list(x.shape), align_corners=False)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)


def random_flip(x: torch.Tensor, p: float = 0.5, generator: torch.Generator | None = None) -> torch.Tensor:
    """Flip each image left-right with probability `p`."""
    flip = torch.rand(x.shape[0], device=x.device, generator=generator) < p
    return torch.where(flip[:, None, None, None], x.flip(-1), x)


def grayscale(x: torch.Tensor) -> torch.Tensor:
    """N x 1 x H x W luma 0.299 R + 0.587 G + 0.114 B (IDC misc/utils.py L231-237); gray stays gray."""
    if x.shape[1] == 1:
        return x
    return torch.einsum("nchw,c->nhw", x, constant(GRAY_WEIGHTS, x)).unsqueeze(1)


def color_jitter(x: torch.Tensor, brightness: float = 0.4, contrast: float = 0.4,
                 saturation: float = 0.4, generator: torch.Generator | None = None) -> torch.Tensor:
    """IDC's ColorJitter (misc/utils.py L240-289), not torchvision's, batched.

    Each op blends the image towards a target, x.lerp(target, a) with a ~ U(-var, var) per image:
    brightness towards black, contrast towards the mean of the image's luma, saturation towards
    its luma; nothing is clamped. IDC runs the three in a random order per image (L286), but they
    commute (each is linear and the luma weights sum to 1), so a fixed order gives the same
    images up to rounding. var = 0 draws a = 0: the op is the identity, as IDC's skipping it.
    """
    var = constant((brightness, contrast, saturation), x)
    a = (torch.rand(x.shape[0], 3, device=x.device, dtype=x.dtype, generator=generator) * 2 - 1) * var
    a_brightness, a_contrast, a_saturation = a.T[:, :, None, None, None]
    x = x - a_brightness * x
    x = x.lerp(grayscale(x).mean(dim=(1, 2, 3), keepdim=True), a_contrast)
    return x.lerp(grayscale(x), a_saturation)


def lighting(x: torch.Tensor, std: float = LIGHTING_STD, generator: torch.Generator | None = None) -> torch.Tensor:
    """IDC's Lighting (misc/utils.py L207-228), batched: add eigvec @ (a * eigval), a ~ N(0, std)^3
    per image, to every pixel; nothing is clamped. A gray image gets the luma of that shift."""
    alpha = torch.randn(x.shape[0], 3, device=x.device, dtype=x.dtype, generator=generator) * std
    shift = (alpha * constant(EIGVAL, x)) @ constant(EIGVEC, x).T  # N x 3 RGB offsets
    if x.shape[1] == 1:
        shift = shift @ constant(GRAY_WEIGHTS, x)[:, None]
    return x + shift[:, :, None, None]


def augment_batch(x: torch.Tensor, kind: str = "idc", generator: torch.Generator | None = None) -> torch.Tensor:
    """Per-step augmentation of [0, 1] images before normalization and CutMix.

    "idc": random resized crop, flip, color jitter, lighting (IDC data.py L299-305);
    "crop_flip": random resized crop and flip only;
    "none": the images as they are (DD-Ranking's evaluation without augmentation).
    """
    if kind not in AUGMENTS:
        raise ValueError(f"unknown augmentation {kind!r}; valid names: {', '.join(AUGMENTS)}")
    if kind == "none":
        return x
    x = random_flip(random_resized_crop(x, generator=generator), generator=generator)
    return lighting(color_jitter(x, generator=generator), generator=generator) if kind == "idc" else x


def beta_sample(beta: float, generator: torch.Generator | None = None) -> float:
    """One draw of Beta(beta, beta) on the CPU: `torch.distributions.Beta(beta, beta).sample()`
    (a Dirichlet draw of (beta, beta), its first component), from `generator` (None: global RNG)."""
    if generator is None:
        return torch.distributions.Beta(float(beta), float(beta)).sample().item()
    concentration = torch.tensor([float(beta), float(beta)])  # as Beta: stack([c1, c0]) in the default dtype
    return torch._sample_dirichlet(concentration, generator=generator).select(-1, 0).item()


def cutmix(x: torch.Tensor, y: torch.Tensor, beta: float = 1.0, prob: float = 1.0,
           generator: torch.Generator | None = None, cpu_generator: torch.Generator | None = None
           ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, float]:
    """CutMix (Yun et al. 2019) as IDC applies it (train.py L200-212, misc/utils.py L156-186).

    With probability `prob`, draws lam ~ Beta(beta, beta) and one box for the whole batch: sides
    2 * (int(side * sqrt(1 - lam)) // 2) around a uniform centre, clipped at the border; pastes
    that box from a permutation of the batch. Returns (mixed x, y_a, y_b, lam) with lam the
    fraction of each image left unchanged, recomputed from the clipped box, so the loss is
    lam * CE(y_a) + (1 - lam) * CE(y_b). IDC uses beta = 1 and prob = 1 for ImageNet
    (argument.py L138-139).

    The scalars (the coin, lam, the centre) are drawn on the CPU from `cpu_generator`, the
    permutation on the images' device from `generator` (see the module's docstring).
    """
    if cpu_generator is None and generator is not None and generator.device.type == "cpu":
        cpu_generator = generator
    if torch.rand((), generator=cpu_generator).item() >= prob:
        return x, y, y, 1.0
    n, _, h, w = x.shape
    lam = beta_sample(beta, cpu_generator)
    cut = math.sqrt(1 - lam)
    half_h, half_w = int(h * cut) // 2, int(w * cut) // 2
    cy, cx = torch.randint(h, (), generator=cpu_generator).item(), torch.randint(w, (), generator=cpu_generator).item()
    top, bottom = max(cy - half_h, 0), min(cy + half_h, h)
    left, right = max(cx - half_w, 0), min(cx + half_w, w)
    perm = torch.randperm(n, device=x.device, generator=generator)
    mixed = x.clone()
    mixed[:, :, top:bottom, left:right] = x[perm, :, top:bottom, left:right]
    lam = 1 - (bottom - top) * (right - left) / (h * w)
    return mixed, y, y[perm], lam

"""Training augmentation of the IDC validation protocol, vectorised over a batch on its device.

Every random draw comes from torch's global RNG, so `torch.manual_seed` in the caller makes a run
repeatable. Nothing here depends on how the pixels are scaled: [0, 1] and normalized batches alike.
"""

from __future__ import annotations

import math

import torch
from torch.nn import functional as F

CROP_TRIES = 10  # as torchvision's RandomResizedCrop


def random_resized_crop(x: torch.Tensor, scale: tuple[float, float] = (0.5, 1.0),
                        ratio: tuple[float, float] = (3 / 4, 4 / 3)) -> torch.Tensor:
    """Crop a random box of each image and resize it back to H x W (bilinear).

    Boxes follow torchvision's RandomResizedCrop: area fraction uniform in `scale`, aspect ratio
    log-uniform in `ratio`, the first of 10 draws that fits the image (else the whole image),
    placed uniformly. The default scale (0.5, 1.0), not torchvision's (0.08, 1.0), is what IDC's
    code (and the paper's) uses for ImageNet-size images.
    """
    n, _, h, w = x.shape
    area = torch.empty(n, CROP_TRIES, device=x.device).uniform_(*scale)
    aspect = torch.empty(n, CROP_TRIES, device=x.device).uniform_(*map(math.log, ratio)).exp()
    box_w = (area * aspect * h / w).sqrt()  # box sides as fractions of the image sides
    box_h = (area / aspect * w / h).sqrt()
    fits = (box_w <= 1) & (box_h <= 1)
    first = fits.int().argmax(dim=1, keepdim=True)
    any_fits = fits.any(dim=1)
    box_w = box_w.gather(1, first).squeeze(1).where(any_fits, 1.0)
    box_h = box_h.gather(1, first).squeeze(1).where(any_fits, 1.0)
    # affine_grid works in [-1, 1] coordinates: the box centre may move by 1 - box side
    centre = (torch.rand(n, 2, device=x.device) * 2 - 1) * torch.stack([1 - box_w, 1 - box_h], 1)
    theta = torch.zeros(n, 2, 3, device=x.device)
    theta[:, 0, 0], theta[:, 1, 1], theta[:, :, 2] = box_w, box_h, centre
    grid = F.affine_grid(theta.to(x.dtype), list(x.shape), align_corners=False)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)


def random_flip(x: torch.Tensor, p: float = 0.5) -> torch.Tensor:
    """Flip each image left-right with probability `p`."""
    flip = torch.rand(x.shape[0], device=x.device) < p
    return torch.where(flip[:, None, None, None], x.flip(-1), x)


def augment_batch(x: torch.Tensor) -> torch.Tensor:
    """The per-step augmentation before CutMix: random resized crop, then horizontal flip."""
    return random_flip(random_resized_crop(x))


def cutmix(x: torch.Tensor, y: torch.Tensor, beta: float = 1.0, prob: float = 1.0
           ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, float]:
    """CutMix (Yun et al. 2019) as IDC applies it: one box for the whole batch.

    With probability `prob`, draws lam ~ Beta(beta, beta), a box of area about (1 - lam) * H * W
    centred uniformly (clipped at the border), and pastes that box from a permutation of the
    batch. Returns (mixed x, y_a, y_b, lam) with lam the fraction of each image left unchanged,
    recomputed from the clipped box, so the loss is lam * CE(y_a) + (1 - lam) * CE(y_b).
    IDC evaluates ImageNet subsets with beta = 1 and prob = 1.
    """
    if torch.rand(()).item() >= prob:
        return x, y, y, 1.0
    n, _, h, w = x.shape
    lam = torch.distributions.Beta(float(beta), float(beta)).sample().item()
    cut = math.sqrt(1 - lam)
    cut_h, cut_w = int(h * cut), int(w * cut)
    cy, cx = torch.randint(h, ()).item(), torch.randint(w, ()).item()
    top, bottom = max(cy - cut_h // 2, 0), min(cy - cut_h // 2 + cut_h, h)
    left, right = max(cx - cut_w // 2, 0), min(cx - cut_w // 2 + cut_w, w)
    perm = torch.randperm(n, device=x.device)
    mixed = x.clone()
    mixed[:, :, top:bottom, left:right] = x[perm, :, top:bottom, left:right]
    lam = 1 - (bottom - top) * (right - left) / (h * w)
    return mixed, y, y[perm], lam

"""MGD3's mode guidance (Chan-Santiago et al., ICML 2025): the modes of each class, and the guide
that pulls toward them.

MGD3 clusters the VAE latents of each class's training images with k-means, as many clusters as
images per class, and guides image i of the class toward centroid i during the first part of
sampling. As its code does (`sample_mode_guidance.py`: scikit-learn `KMeans(n_clusters=IPC,
random_state=0, n_init="auto")` on the flattened posterior means, scaled by the VAE's scaling
factor), on the cached latents of the un-flipped images.
"""

from __future__ import annotations

import numpy as np
import torch

from . import Guide, GuidanceMethod, Job


def class_modes(cache: dict, ipc: int, seed: int = 0) -> torch.Tensor:
    """(classes, ipc, C, H, W) k-means centroids of the latents of each class the cache holds (an
    encode job's chunk of classes, or all), in class order; each in scikit-learn's order."""
    from sklearn.cluster import KMeans

    latents = (cache["mean"][:, 0].float() * cache["scaling_factor"]).numpy()  # posterior means, no flip
    labels = np.asarray(cache["labels"])
    shape = latents.shape[1:]
    modes = []
    for c in np.unique(labels):
        points = latents[labels == c].reshape(int((labels == c).sum()), -1).astype(np.float64)
        if len(points) < ipc:
            raise ValueError(f"class {cache['class_names'][c]!r} has {len(points)} training images, fewer than "
                             f"the {ipc} modes MGD3 needs (one per image of the set)")
        kmeans = KMeans(n_clusters=ipc, random_state=seed, n_init="auto").fit(points)
        modes.append(torch.from_numpy(kmeans.cluster_centers_).float().reshape(ipc, *shape))
    return torch.stack(modes)


class ModeGuide(Guide):
    """MGD3's mode guidance: image i of class c is pulled toward `modes[c, i]` at the chain indices
    above `stop_step` (MGD3: 49..26 of 50), its mean moving by `scale` standard deviations per unit
    of distance from the predicted clean latent: mean + scale * sigma_t * (mode - x0), as MGD3's
    sampler (its gaussian_diffusion.py `p_sample`) does."""

    def __init__(self, modes: torch.Tensor, *, scale: float, stop_step: int):
        self.modes, self.scale, self.stop_step = modes, scale, stop_step
        self.batch_modes = None

    def begin_batch(self, batch: list[Job]) -> None:
        self.batch_modes = torch.stack([self.modes[c, i] for c, i in batch])

    def acts_at(self, index: int) -> bool:
        return index > self.stop_step

    def mean_shift(self, x0: torch.Tensor, std: torch.Tensor, dx0_dxt: torch.Tensor) -> torch.Tensor:
        return self.scale * std * (self.batch_modes.to(x0.device) - x0)


class MGD3(GuidanceMethod):
    """Methods `mgd3` and `mgd3_<fine-tuned method>`: the modes of each class are a rule of their
    own (rule modes, one file per IPC: k-means with as many clusters as images a class)."""

    name, label = "mgd3", "MGD3"

    def settings(self, section: dict, finetuned: bool) -> dict:
        return {k: section[k] for k in ("scale", "stop_step")}  # the seed is the modes' (rule modes)

    def inputs(self, paths, ipc: int) -> list[str]:
        return [paths.modes_file(ipc)]

    def check(self, settings: dict, steps: int) -> None:
        if settings["stop_step"] >= steps - 1:  # the chain's indices are steps - 1 .. 0
            raise ValueError(f"mgd3.stop_step {settings['stop_step']} guides none of its {steps} denoising steps "
                             f"(guidance acts at the chain indices above it, the highest {steps - 1}); lower it")

    def check_data(self, config: dict, counts: dict[str, int], names: list[str]) -> None:
        name, fewest = min(counts.items(), key=lambda item: item[1])
        ipc = max(config["ipcs"])
        if ipc > fewest:
            raise ValueError(f"ipcs: IPC {ipc} exceeds the {fewest} training images of class '{name}', so "
                             f"methods {', '.join(names)} cannot find one k-means mode per image (MGD3)")

    def shrink(self, section: dict, preset: dict, steps: int, epochs: int) -> None:
        section["stop_step"] = max(-1, round(preset["mgd3"]["stop_step"] * steps / preset["generate"]["steps"]))

    def build_guide(self, settings: dict, inputs: list[str], vae, device) -> Guide:
        from ..io import load_torch

        return ModeGuide(load_torch(inputs[0])["modes"], **settings)


METHOD = MGD3()

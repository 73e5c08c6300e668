"""The guide interface: how a training-free guidance method steers the sampler.

`generate.generate_set` and `diffusion.sample_latents` call a guide at four points and name no
method: `batches` (which images go in a batch, and in what order), `begin_batch` (before a batch is
sampled), `acts_at` (whether it steers a chain index) with `mean_shift` (how far it moves the DDPM
step's mean, given the predicted clean latent) and `end_batch` (what it keeps of a finished batch).
`Guide` itself steers nothing: plain sampling. MGD3 (`modes.ModeGuide`) and IGD
(`igd.InfluenceGuide`) are its subclasses.
"""

from __future__ import annotations

import torch

Job = tuple[int, int]  # (class index, image index within the class)


class Guide:
    """No guidance: class-major batches of `batch_size` images, the sampler's mean left as it is."""

    def batches(self, classes: list[int], ipc: int, batch_size: int) -> list[list[Job]]:
        jobs = [(c, i) for c in classes for i in range(ipc)]
        return [jobs[start:start + batch_size] for start in range(0, len(jobs), batch_size)]

    def begin_batch(self, batch: list[Job]) -> None:
        """The images of the next batch, in its order."""

    def acts_at(self, index: int) -> bool:
        """Whether the guide moves the step from chain index `index`."""
        return False

    def mean_shift(self, x0: torch.Tensor, std: torch.Tensor, dx0_dxt: torch.Tensor) -> torch.Tensor:
        """The shift of the step's mean, given the predicted clean latents `x0`, the step's standard
        deviation `std` and dx0/dx_t = 1 / sqrt(abar_t) (the noise prediction held fixed)."""
        return torch.zeros_like(x0)

    def end_batch(self, latents: torch.Tensor) -> None:
        """The batch's final latents, in the order of `begin_batch`."""


NO_GUIDE = Guide()

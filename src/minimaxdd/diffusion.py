"""Gaussian diffusion as used by DiT: linear betas over 1000 steps, epsilon prediction, learned variance.

Training loss = MSE on the noise + the variational bound term that trains the variance (ADM's
"hybrid" loss, with the mean detached in the bound). Sampling uses ADM's respacing: `steps`
timesteps evenly spaced over [0, T-1] (the same as diffusers' DDPMScheduler with
`timestep_spacing="linspace"`), with betas recomputed for the respaced chain, and either the
ancestral (DDPM) step with the learned variance interpolated between the respaced posterior
variance and beta, or the DDIM step (Song et al. 2021; IDDPM's `ddim_sample`), which ignores the
learned variance.
"""

from __future__ import annotations

import math
from typing import Callable

import numpy as np
import torch

from .guidance import NO_GUIDE, Guide
from .io import autocast, compiled

NUM_TIMESTEPS = 1000


def linear_betas(num_timesteps: int = NUM_TIMESTEPS) -> np.ndarray:
    scale = 1000 / num_timesteps
    return np.linspace(scale * 1e-4, scale * 0.02, num_timesteps, dtype=np.float64)


def respaced_timesteps(steps: int, num_timesteps: int = NUM_TIMESTEPS) -> list[int]:
    """ADM's `space_timesteps(T, str(steps))`, ascending: 0, 20, 41, ..., 999 for 50 of 1000."""
    if not 2 <= steps <= num_timesteps:  # one step leaves no posterior variance to clip against
        raise ValueError(f"denoising steps must be in 2..{num_timesteps}, got {steps}")
    stride = (num_timesteps - 1) / (steps - 1)
    return sorted({round(i * stride) for i in range(steps)})


def ddim_timesteps(steps: int, num_timesteps: int = NUM_TIMESTEPS) -> list[int]:
    """IDDPM's `space_timesteps(T, "ddim<steps>")`: the first stride whose range(0, T, stride) has
    `steps` timesteps (0, 20, ..., 980 for 50 of 1000)."""
    for stride in range(1, num_timesteps):
        if len(range(0, num_timesteps, stride)) == steps:
            return list(range(0, num_timesteps, stride))
    raise ValueError(f"no even stride gives {steps} DDIM steps of {num_timesteps}")


SPACINGS = {"ddpm": respaced_timesteps, "ddim": ddim_timesteps}


def _gather(values: torch.Tensor, t: torch.Tensor, ndim: int) -> torch.Tensor:
    return values.to(t.device)[t].float().view(-1, *([1] * (ndim - 1)))


class GaussianDiffusion:
    """Schedule tensors for one chain (the full 1000-step chain or a respaced one)."""

    def __init__(self, betas: np.ndarray, timestep_map: list[int] | None = None):
        self.num_timesteps = len(betas)
        # The model is always called with original timesteps; a respaced chain maps its indices back.
        self.timestep_map = torch.tensor(timestep_map if timestep_map is not None else range(len(betas)))
        self.model_timesteps = self.timestep_map.clone()  # the same ids, on the device after `to`
        alphas_cumprod = np.cumprod(1.0 - betas)
        alphas_cumprod_prev = np.append(1.0, alphas_cumprod[:-1])
        posterior_variance = betas * (1.0 - alphas_cumprod_prev) / (1.0 - alphas_cumprod)
        as_t = lambda a: torch.tensor(a, dtype=torch.float64)  # noqa: E731
        self.betas = as_t(betas)
        self.sqrt_alphas_cumprod = as_t(np.sqrt(alphas_cumprod))
        self.sqrt_one_minus_alphas_cumprod = as_t(np.sqrt(1.0 - alphas_cumprod))
        self.sqrt_recip_alphas_cumprod = as_t(np.sqrt(1.0 / alphas_cumprod))
        self.sqrt_recipm1_alphas_cumprod = as_t(np.sqrt(1.0 / alphas_cumprod - 1))
        # log of the posterior variance, clipped because it is 0 at t = 0
        self.posterior_log_variance_clipped = as_t(np.log(np.append(posterior_variance[1], posterior_variance[1:])))
        self.log_betas = as_t(np.log(betas))
        self.posterior_mean_coef1 = as_t(betas * np.sqrt(alphas_cumprod_prev) / (1.0 - alphas_cumprod))
        self.posterior_mean_coef2 = as_t((1.0 - alphas_cumprod_prev) * np.sqrt(1.0 - betas) / (1.0 - alphas_cumprod))
        self.posterior_variance = as_t(posterior_variance)
        self.alphas_cumprod, self.alphas_cumprod_prev = as_t(alphas_cumprod), as_t(alphas_cumprod_prev)

    def to(self, device: torch.device) -> "GaussianDiffusion":
        """The schedule's tables on `device`, so that no step copies them from the host (on CUDA, a
        copy from pageable host memory waits for the device). `timestep_map` stays on the host,
        where the sampler reads it."""
        for name, value in vars(self).items():
            if isinstance(value, torch.Tensor) and name != "timestep_map":
                setattr(self, name, value.to(device))
        return self

    @classmethod
    def respaced(cls, steps: int, num_timesteps: int = NUM_TIMESTEPS, sampler: str = "ddpm") -> "GaussianDiffusion":
        """The chain of `steps` timesteps: ADM's spacing for the DDPM sampler, IDDPM's "ddim"
        spacing (an even stride) for DDIM, as the DiT / MinimaxDiffusion code creates them."""
        kept = SPACINGS[sampler](steps, num_timesteps)
        alphas_cumprod = np.cumprod(1.0 - linear_betas(num_timesteps))
        prev, betas = 1.0, []
        for t in kept:
            betas.append(1 - alphas_cumprod[t] / prev)
            prev = alphas_cumprod[t]
        return cls(np.array(betas), kept)

    # -- forward process ------------------------------------------------------------------------
    def q_sample(self, x0, t, noise):
        n = x0.ndim
        return _gather(self.sqrt_alphas_cumprod, t, n) * x0 + _gather(self.sqrt_one_minus_alphas_cumprod, t, n) * noise

    def predict_x0(self, x_t, t, eps):
        n = x_t.ndim
        return _gather(self.sqrt_recip_alphas_cumprod, t, n) * x_t - _gather(self.sqrt_recipm1_alphas_cumprod, t, n) * eps

    def posterior_mean(self, x0, x_t, t):
        n = x_t.ndim
        return _gather(self.posterior_mean_coef1, t, n) * x0 + _gather(self.posterior_mean_coef2, t, n) * x_t

    def model_log_variance(self, var_values, t):
        """Learned range: interpolate between the clipped posterior variance and beta (log space)."""
        n = var_values.ndim
        frac = (var_values + 1) / 2
        return frac * _gather(self.log_betas, t, n) + (1 - frac) * _gather(self.posterior_log_variance_clipped, t, n)

    # -- training -------------------------------------------------------------------------------
    def training_losses(self, model: Callable, x0, t, y, noise=None) -> dict[str, torch.Tensor]:
        """Per-sample `mse`, `vb`, their sum `loss`, and the predicted clean latent `pred_x0`."""
        noise = torch.randn_like(x0) if noise is None else noise
        x_t = self.q_sample(x0, t, noise)
        out = model(x_t, self.model_timesteps.to(t.device)[t], y).float()  # float32 losses under autocast
        channels = x0.shape[1]
        eps, var_values = out[:, :channels], out[:, channels:]
        mse = ((noise - eps) ** 2).flatten(1).mean(1)
        # The bound trains the variance only: the mean comes from a detached noise prediction.
        vb = self._vb_bits(x0, x_t, t, eps.detach(), var_values)
        return {"mse": mse, "vb": vb, "loss": mse + vb, "pred_x0": self.predict_x0(x_t, t, eps)}

    def _vb_bits(self, x0, x_t, t, eps, var_values):
        true_mean = self.posterior_mean(x0, x_t, t)
        true_log_var = _gather(self.posterior_log_variance_clipped, t, x0.ndim)
        model_mean = self.posterior_mean(self.predict_x0(x_t, t, eps), x_t, t)
        model_log_var = self.model_log_variance(var_values, t)
        kl = normal_kl(true_mean, true_log_var, model_mean, model_log_var).flatten(1).mean(1) / math.log(2.0)
        nll = -discretized_gaussian_log_likelihood(x0, model_mean, 0.5 * model_log_var).flatten(1).mean(1) / math.log(2.0)
        return torch.where(t == 0, nll, kl)

    # -- sampling -------------------------------------------------------------------------------
    def p_step(self, model_out, x_t, index: int, noise, guide: Guide = NO_GUIDE):
        """One ancestral reverse step from chain index `index` (no noise is added at index 0), its
        mean moved by `guide.mean_shift` where the guide `acts_at` the index."""
        t = torch.full((x_t.shape[0],), index, dtype=torch.long, device=x_t.device)
        channels = x_t.shape[1]
        eps, var_values = model_out[:, :channels], model_out[:, channels:]
        x0 = self.predict_x0(x_t, t, eps)
        mean = self.posterior_mean(x0, x_t, t)
        std = torch.exp(0.5 * self.model_log_variance(var_values, t))
        if guide.acts_at(index):
            mean = mean + guide.mean_shift(x0, std, _gather(self.sqrt_recip_alphas_cumprod, t, x_t.ndim))
        return mean if index == 0 else mean + std * noise

    def ddim_step(self, model_out, x_t, index: int, noise, eta: float):
        """One DDIM step (IDDPM `ddim_sample`): x0 and eps from the noise prediction, then
        x_prev = sqrt(abar_prev) x0 + sqrt(1 - abar_prev - sigma^2) eps + sigma z, with
        sigma = eta sqrt((1 - abar_prev) / (1 - abar)) sqrt(1 - abar / abar_prev). eta = 0 is
        deterministic; eta = 1 is the ancestral step with the fixed posterior variance."""
        t = torch.full((x_t.shape[0],), index, dtype=torch.long, device=x_t.device)
        n = x_t.ndim
        eps = model_out[:, : x_t.shape[1]]
        x0 = self.predict_x0(x_t, t, eps)
        abar, abar_prev = _gather(self.alphas_cumprod, t, n), _gather(self.alphas_cumprod_prev, t, n)
        sigma = eta * ((1 - abar_prev) / (1 - abar)).sqrt() * (1 - abar / abar_prev).sqrt()
        mean = abar_prev.sqrt() * x0 + (1 - abar_prev - sigma**2).sqrt() * eps
        return mean if index == 0 else mean + sigma * noise


def normal_kl(mean1, logvar1, mean2, logvar2):
    return 0.5 * (-1.0 + logvar2 - logvar1 + torch.exp(logvar1 - logvar2) + (mean1 - mean2) ** 2 * torch.exp(-logvar2))


def _approx_standard_normal_cdf(x):
    return 0.5 * (1.0 + torch.tanh(math.sqrt(2.0 / math.pi) * (x + 0.044715 * x**3)))


def discretized_gaussian_log_likelihood(x, means, log_scales):
    """Log-likelihood of x (in [-1, 1], 256 bins) under a discretised Gaussian, as in ADM."""
    centered = x - means
    inv_std = torch.exp(-log_scales)
    cdf_plus = _approx_standard_normal_cdf(inv_std * (centered + 1.0 / 255.0))
    cdf_min = _approx_standard_normal_cdf(inv_std * (centered - 1.0 / 255.0))
    log_cdf_plus = torch.log(cdf_plus.clamp(min=1e-12))
    log_one_minus_cdf_min = torch.log((1.0 - cdf_min).clamp(min=1e-12))
    log_cdf_delta = torch.log((cdf_plus - cdf_min).clamp(min=1e-12))
    return torch.where(
        x < -0.999, log_cdf_plus, torch.where(x > 0.999, log_one_minus_cdf_min, log_cdf_delta)
    )


@torch.no_grad()
def sample_latents(model, diffusion: GaussianDiffusion, labels, noise, guidance_scale: float, progress=None,
                   guidance_channels: int | None = None, precision: str = "fp32", sampler: str = "ddpm",
                   eta: float = 0.0, guide: Guide = NO_GUIDE, compile: bool = False):
    """Sampling of a batch, from noise to clean latents.

    `noise` has shape (steps + 1, N, C, H, W): noise[0] is the starting point, noise[k] the noise
    added by the k-th reverse step. Passing it in (rather than drawing it here) is what lets image i
    of class c depend only on its own seed, whatever batch it is sampled in. `guidance_channels`:
    see DiT.forward_with_guidance. `sampler`: "ddpm" (ancestral, learned variance) or "ddim" (with
    `eta`). `guide`: a training-free guidance method (guidance.Guide) that moves the ancestral
    step's mean; the batch is the one it was last told of (`begin_batch`). `compile`: the model's
    (guided) prediction runs through torch.compile (io.compiled).
    """
    def predict(x, t):
        if guidance_scale == 1.0:
            return model(x, t, labels)
        return model.forward_with_guidance(x, t, labels, guidance_scale, guidance_channels)

    if sampler == "ddim" and guide is not NO_GUIDE:  # methods.check stops such a method at start
        raise ValueError("guidance moves the ancestral (ddpm) step's mean; the ddim sampler takes no guide")
    predict = compiled(predict) if compile else predict
    x = noise[0]
    indices = range(diffusion.num_timesteps - 1, -1, -1)
    for k, index in enumerate(progress(indices) if progress else indices, start=1):
        t = torch.full((x.shape[0],), int(diffusion.timestep_map[index]), dtype=torch.long, device=x.device)
        with autocast(x.device, precision):
            out = predict(x, t)
        if sampler == "ddim":
            x = diffusion.ddim_step(out.float(), x, index, noise[k], eta)
        else:
            x = diffusion.p_step(out.float(), x, index, noise[k], guide)
    return x

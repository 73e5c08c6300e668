"""MGD3's mode guidance and the DDIM sampler (issue 14): the mechanics, pinned."""

import numpy as np
import pytest
import torch
from sklearn.cluster import KMeans

from minimaxdd.diffusion import GaussianDiffusion, ddim_timesteps, linear_betas, sample_latents
from minimaxdd.generate import generate_set
from minimaxdd.guidance.mgd3 import ModeGuide, class_modes
from minimaxdd.vae import build_tiny_vae

from conftest import tiny_dit

CPU = torch.device("cpu")
SAMPLING = dict(steps=6, guidance_scale=2.0, guidance_channels=None, precision="fp32", sampler="ddpm", eta=0.0,
                batch_size=3, seed=5, device=CPU)


def latent_cache(per_class=12, classes=2):
    torch.manual_seed(0)
    n = per_class * classes
    return {"mean": torch.randn(n, 2, 2, 4, 4).half(), "std": torch.full((n, 2, 2, 4, 4), 0.1).half(),
            "scaling_factor": 0.5, "labels": torch.arange(n) % classes, "class_ids": list(range(classes)),
            "class_names": [f"c{c}" for c in range(classes)]}


def test_modes_are_the_k_means_centroids_of_each_class_latents():
    cache = latent_cache()
    modes = class_modes(cache, ipc=3, seed=0)
    assert modes.shape == (2, 3, 2, 4, 4)
    for c in range(2):
        points = (cache["mean"][cache["labels"] == c, 0].float() * 0.5).reshape(12, -1).double().numpy()
        centroids = KMeans(n_clusters=3, random_state=0, n_init="auto").fit(points).cluster_centers_
        assert np.allclose(modes[c].reshape(3, -1).numpy(), centroids, atol=1e-6)
    with pytest.raises(ValueError, match="class 'c0' has 12 training images, fewer than the 13 modes"):
        class_modes(cache, ipc=13)


def test_mode_guidance_of_scale_zero_is_the_unguided_sample():
    model = tiny_dit()
    vae = build_tiny_vae(channels=1, resolution=8, block_channels=[8, 8], latent_channels=2).eval()
    modes = class_modes(latent_cache(), ipc=2)
    plain, _ = generate_set(model, vae, class_ids=[0, 1], ipc=2, **SAMPLING)
    off, _ = generate_set(model, vae, class_ids=[0, 1], ipc=2, guide=ModeGuide(modes, scale=0.0, stop_step=-1),
                          **SAMPLING)
    guided, _ = generate_set(model, vae, class_ids=[0, 1], ipc=2, guide=ModeGuide(modes, scale=0.5, stop_step=2),
                             **SAMPLING)
    assert torch.equal(plain, off)
    assert not torch.equal(plain, guided)


def test_mode_guidance_pulls_toward_the_mode_only_above_the_stop_step(monkeypatch):
    diffusion = GaussianDiffusion.respaced(6)
    guided_at = []
    real_step = GaussianDiffusion.p_step

    def spy(self, model_out, x_t, index, noise, guide):
        guided_at.append((index, guide.acts_at(index)))
        return real_step(self, model_out, x_t, index, noise, guide)

    monkeypatch.setattr(GaussianDiffusion, "p_step", spy)
    noise = torch.randn(7, 2, 2, 4, 4)
    guide = ModeGuide(torch.zeros(2, 1, 2, 4, 4), scale=0.1, stop_step=2)
    guide.begin_batch([(0, 0), (1, 0)])
    sample_latents(tiny_dit(), diffusion, torch.tensor([0, 1]), noise, 1.0, guide=guide)
    assert guided_at == [(5, True), (4, True), (3, True), (2, False), (1, False), (0, False)]


def test_a_guided_step_moves_the_mean_toward_the_mode_by_scale_sigma():
    """MGD3: mean + scale * sigma_t * (mode - x0), with the learned sigma_t (its p_sample)."""
    diffusion = GaussianDiffusion.respaced(10)
    x_t, out = torch.randn(2, 2, 4, 4), torch.randn(2, 4, 4, 4)
    mode, zero = torch.randn(2, 2, 4, 4), torch.zeros(2, 2, 4, 4)
    t = torch.full((2,), 5)
    x0 = diffusion.predict_x0(x_t, t, out[:, :2])
    sigma = torch.exp(0.5 * diffusion.model_log_variance(out[:, 2:], t))
    plain = diffusion.p_step(out, x_t, 5, zero)
    guide = ModeGuide(mode[:, None], scale=0.3, stop_step=-1)
    guide.begin_batch([(0, 0), (1, 0)])
    guided = diffusion.p_step(out, x_t, 5, zero, guide)
    assert torch.allclose(guided - plain, 0.3 * sigma * (mode - x0), atol=1e-6)


def test_ddim_with_eta_zero_is_deterministic():
    diffusion = GaussianDiffusion.respaced(5, sampler="ddim")
    start = torch.randn(1, 2, 2, 4, 4)
    runs = [sample_latents(tiny_dit(), diffusion, torch.tensor([0, 1]), torch.cat([start, torch.randn(5, 2, 2, 4, 4)]),
                           2.0, sampler="ddim", eta=0.0) for _ in range(2)]
    assert torch.equal(runs[0], runs[1])  # other step noise, the same path


def test_ddim_with_eta_one_over_all_steps_is_the_ddpm_posterior_with_fixed_variance():
    diffusion = GaussianDiffusion(linear_betas(1000))
    x_t, eps = torch.randn(3, 2, 4, 4), torch.randn(3, 2, 4, 4)
    out = torch.cat([eps, torch.zeros_like(eps)], 1)  # DDIM ignores the variance channels
    for index in (999, 500, 37, 1):
        t = torch.full((3,), index)
        mean = diffusion.ddim_step(out, x_t, index, torch.zeros_like(x_t), eta=1.0)
        sigma = diffusion.ddim_step(out, x_t, index, torch.ones_like(x_t), eta=1.0) - mean
        expected = diffusion.posterior_mean(diffusion.predict_x0(x_t, t, eps), x_t, t)
        assert torch.allclose(mean, expected, atol=1e-5)
        assert torch.allclose(sigma, diffusion.posterior_variance[index].sqrt().float().expand_as(sigma), rtol=1e-4)


def test_ddim_chain_is_dits_even_stride():
    assert ddim_timesteps(50) == list(range(0, 1000, 20))  # IDDPM space_timesteps(1000, "ddim50")
    assert ddim_timesteps(25) == list(range(0, 1000, 40))
    assert GaussianDiffusion.respaced(50, sampler="ddim").timestep_map.tolist() == list(range(0, 1000, 20))

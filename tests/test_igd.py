"""IGD's influence-guided sampling (issue 24): the mechanism, pinned on tiny nets on the CPU."""

import pytest
import torch
from torch.nn import functional as F

from minimaxdd.diffusion import GaussianDiffusion, sample_latents
from minimaxdd.generate import generate_set, image_noise
from minimaxdd.guidance.igd import InfluenceGuide, build_surrogate, class_gradients, influence_scores
from minimaxdd.vae import build_tiny_vae

from conftest import tiny_dit, toy_split

CPU = torch.device("cpu")
SAMPLING = dict(steps=8, guidance_scale=2.0, guidance_channels=None, precision="fp32", sampler="ddpm", eta=0.0,
                batch_size=2, seed=3, device=CPU)


def surrogate(epochs=(0, 1)):
    """A 3-class ConvNet on 8 px gray images, at two 'checkpoints' (seeded random weights)."""
    saved = {"arch": "convnet", "channels": 1, "num_classes": 3, "resolution": 8, "width_factor": 0.125,
             "normalize": "half", "epochs": list(epochs), "states": []}
    for e in epochs:
        torch.manual_seed(100 + e)
        saved["states"].append(build_surrogate(saved).state_dict())
    return saved


def real_images(c, n=6):
    x, y = toy_split(per_class=n, seed=0)
    return F.interpolate(x[y == c].float(), size=8, mode="area").round().to(torch.uint8)


SURROGATE = surrogate()
GRADIENTS = {c: class_gradients(SURROGATE, real_images(c), c, CPU) for c in range(3)}


def guide(influence=1.0, deviation=1.0, interval=(0, 7), memory=8):
    torch.manual_seed(0)
    vae = build_tiny_vae(channels=1, resolution=8, block_channels=[8, 8], latent_channels=2).eval()
    return InfluenceGuide(vae, SURROGATE, GRADIENTS.__getitem__, influence_scale=influence,
                          deviation_scale=deviation, interval=list(interval), memory_size=memory, device=CPU)


def test_class_gradient_is_the_mean_gradient_over_the_class_images():
    net = build_surrogate(SURROGATE)
    net.load_state_dict(SURROGATE["states"][1])
    x = real_images(2).float().div(255).sub(0.5).div(0.5)
    loss = F.cross_entropy(net(x), torch.full((len(x),), 2))
    expected = torch.cat([g.flatten() for g in torch.autograd.grad(loss, list(net.parameters()))])
    assert GRADIENTS[2].shape == (2, expected.numel())
    assert torch.allclose(GRADIENTS[2][1], expected, atol=1e-6)


def test_influence_term_is_the_cosine_of_the_stated_gradients_and_its_gradient_is_autograd_s():
    g = guide()
    g.start_classes([1])
    g.set_labels([1, 1, 1])
    images = torch.randn(3, 1, 8, 8)
    nets = [build_surrogate(SURROGATE) for _ in SURROGATE["states"]]
    for net, state in zip(nets, SURROGATE["states"]):
        net.load_state_dict(state)
    expected_value, expected_grad = [], []
    for image in images:
        x = image[None].clone().requires_grad_(True)
        total = 0
        for net, real in zip(nets, GRADIENTS[1]):
            loss = F.cross_entropy(net(x), torch.tensor([1]))
            grads = torch.autograd.grad(loss, list(net.parameters()), create_graph=True)
            total = total + F.cosine_similarity(torch.cat([q.flatten() for q in grads]), real, dim=0)
        expected_value.append(total.detach())
        expected_grad.append(torch.autograd.grad(total, x)[0][0])
    assert torch.allclose(g.influence(images), torch.stack(expected_value), atol=1e-5)
    assert torch.allclose(g.influence_gradient(images), torch.stack(expected_grad), atol=1e-5)


def test_guide_is_the_scaled_influence_gradient_through_the_decoder_plus_the_deviation_gradient():
    g = guide(influence=2.0, deviation=3.0)
    g.begin_batch([(0, 0), (2, 0)])
    g.end_batch(torch.randn(2, 2, 4, 4))
    x0 = torch.randn(2, 2, 4, 4, requires_grad=True)
    objective = 2.0 * g.influence(g.surrogate_input(x0)).sum() + 3.0 * g.deviation(x0).sum()
    (expected,) = torch.autograd.grad(objective, x0)
    assert torch.allclose(g(x0), expected, atol=1e-5)
    # the DDPM mean moves by sigma_t^2 dJ/dx_t, with dJ/dx_t = dJ/dx0 / sqrt(abar_t) (ADM's condition_mean)
    std, dx0_dxt = torch.full((2, 1, 1, 1), 0.3), torch.full((2, 1, 1, 1), 1.7)
    assert torch.allclose(g.mean_shift(x0, std, dx0_dxt), 0.09 * 1.7 * expected, atol=1e-5)


def test_guidance_zero_is_the_unguided_sampler_bit_for_bit():
    model = tiny_dit()
    g = guide(influence=0.0, deviation=0.0)
    plain, plain_labels = generate_set(model, g.vae, class_ids=[0, 1, 2], ipc=3, **SAMPLING)
    off, off_labels = generate_set(model, g.vae, class_ids=[0, 1, 2], ipc=3, guide=g, **SAMPLING)
    assert torch.equal(plain, off) and torch.equal(plain_labels, off_labels)
    on, _ = generate_set(model, g.vae, class_ids=[0, 1, 2], ipc=3, guide=guide(influence=50.0), **SAMPLING)
    assert not torch.equal(plain, on)


class Spy(InfluenceGuide):
    """IGD's interval, with a guide that records where it is called and pushes every latent by a constant."""

    def __init__(self, low, high):
        self.low, self.high, self.calls = low, high, 0

    def __call__(self, x0):
        self.calls += 1
        return torch.ones_like(x0)


def test_guidance_acts_only_inside_the_interval():
    model, diffusion = tiny_dit(), GaussianDiffusion.respaced(8)
    labels, noise = torch.tensor([0, 1]), torch.stack([image_noise(0, c, 0, 8, (2, 4, 4)) for c in (0, 1)], dim=1)
    plain = sample_latents(model, diffusion, labels, noise, 2.0)
    spy = Spy(3, 5)
    guided = sample_latents(model, diffusion, labels, noise, 2.0, guide=spy)
    assert spy.calls == 3 and not torch.equal(plain, guided)
    # guided only at indices 5..3: a guide whose interval holds no index of the chain leaves it as it is
    assert torch.equal(plain, sample_latents(model, diffusion, labels, noise, 2.0, guide=Spy(8, 9)))


def test_deviation_term_pushes_away_from_the_class_earlier_samples():
    g = guide(influence=0.0, deviation=1.0)
    g.start_classes([0, 1])
    g.set_labels([0, 1])
    assert torch.equal(g(torch.randn(2, 2, 4, 4)), torch.zeros(2, 2, 4, 4))  # nothing remembered yet
    earlier = torch.randn(3, 2, 4, 4)
    for latent in earlier:  # three earlier images of class 0
        g.set_labels([0])
        g.end_batch(latent[None])
    g.set_labels([0, 1])
    x0 = earlier[1:2].repeat(2, 1, 1, 1) + 0.3 * torch.randn(2, 2, 4, 4)
    direction = g(x0)
    assert torch.equal(direction[1], torch.zeros(2, 4, 4))  # class 1 has no earlier image: not pushed
    step = x0[:1] + 0.05 * direction[:1]
    before = F.cosine_similarity(x0[:1].flatten(1), earlier.flatten(1)).max()
    after = F.cosine_similarity(step.flatten(1), earlier.flatten(1)).max()
    assert after < before
    for _ in range(9):
        g.end_batch(torch.randn(2, 2, 4, 4))
    assert len(g.memory[0]) == 8 and len(g.memory[1]) == 8  # each class's last memory_size latents


def test_image_i_of_a_class_sees_the_class_images_before_it_whatever_the_batch():
    """DD_IGD's order (one image after another per class), batched across classes: the set does not
    depend on the batch size."""
    model = tiny_dit()
    sets = [generate_set(model, guide().vae, class_ids=[0, 1, 2], ipc=3, guide=guide(influence=3.0, deviation=5.0),
                         **{**SAMPLING, "batch_size": batch})[0] for batch in (1, 2, 3)]
    assert all(torch.equal(s, sets[0]) for s in sets[1:])
    no_memory = generate_set(model, guide().vae, class_ids=[0, 1, 2], ipc=3,
                             guide=guide(influence=3.0, deviation=5.0, memory=0), **SAMPLING)[0]
    assert not torch.equal(no_memory, sets[0])  # the deviation term acts within a class


def test_igd_raises_the_tracin_score_of_the_set_against_unguided_sampling_from_the_same_seeds():
    model = tiny_dit()
    on, off = guide(influence=200.0, deviation=0.0), guide(influence=0.0, deviation=0.0)
    kwargs = dict(class_ids=[0, 1, 2], ipc=4, **SAMPLING)
    guided, labels = generate_set(model, on.vae, guide=on, **kwargs)
    plain, _ = generate_set(model, off.vae, guide=off, **kwargs)
    score_guided = influence_scores(on, guided, labels)
    score_plain = influence_scores(on, plain, labels)
    assert score_guided.mean() > score_plain.mean() + 0.05, (score_guided.mean(), score_plain.mean())


def test_igd_methods_check_their_interval_and_sampler():
    from minimaxdd import methods, plan

    config = plan.load_config({"experiment": "x", "methods": ["igd", "igd_minimax"]})
    settings = methods.generate_settings("igd_minimax", config)["guidance"]
    assert settings == {"method": "igd", "influence_scale": 10.0, "deviation_scale": 100.0, "interval": [30, 45],
                        "memory_size": 64}
    assert methods.generate_settings("igd", config)["guidance"]["influence_scale"] == 5.0
    assert methods.finetune_name("igd_minimax@steps=60") == "minimax"
    methods.check("igd_minimax@steps=60", config)
    with pytest.raises(methods.MethodError, match=r"igd.interval \(low 30, high 45\) must be chain indices"):
        methods.check("igd@steps=40", config)
    with pytest.raises(methods.MethodError, match="igd guidance moves the ancestral sampler's mean"):
        methods.check("igd@sampler=ddim", config)


def test_surrogate_keeps_its_trajectory_and_a_killed_job_resumes_it(tmp_path, monkeypatch):
    from minimaxdd.guidance.igd import train_surrogate
    from minimaxdd.resume import Checkpointer

    from conftest import hard_label

    x, y = toy_split(per_class=8, seed=1)
    protocol = hard_label(width_factor=0.125, evaluations=4, batch_size=8)  # 3 steps an epoch
    run = dict(arch="convnet", num_classes=3, epochs=4, keep=[0, 1, 3], seed=0, device=CPU, channels_last=False)
    whole = train_surrogate(protocol, x, y, x, y, checkpointer=None, trajectory=tmp_path / "a", **run)
    assert whole["epochs"] == [0, 1, 3] and len(whole["states"]) == 3 and whole["resolution"] == 16
    assert not all(torch.equal(a, b) for a, b in zip(whole["states"][0].values(), whole["states"][2].values()))

    checkpointer = Checkpointer(tmp_path / "resume.pt", every=2, fingerprint="job")
    real_step, count = torch.optim.SGD.step, {"n": 0}

    def step(self, *args, **kwargs):
        count["n"] += 1
        if count["n"] > 7:  # killed in epoch 3, after the checkpoint of epoch 2
            raise KeyboardInterrupt
        return real_step(self, *args, **kwargs)

    with monkeypatch.context() as patch:
        patch.setattr(torch.optim.SGD, "step", step)
        with pytest.raises(KeyboardInterrupt):
            train_surrogate(protocol, x, y, x, y, checkpointer=checkpointer, trajectory=tmp_path / "b", **run)
    resumed = train_surrogate(protocol, x, y, x, y, checkpointer=checkpointer, trajectory=tmp_path / "b", **run)
    for a, b in zip(whole["states"], resumed["states"]):
        assert all(torch.equal(a[k], b[k]) for k in a)


def test_a_diverged_guidance_is_an_error_not_a_set():
    """IGD with k = 1e30 (finite, so the schema allows it) drives the latents to inf or nan, which
    decode to flat black images: generation stops instead of writing them as a set."""
    with pytest.raises(FloatingPointError, match=r"the sampler diverged .* lower the guidance's scales"):
        generate_set(tiny_dit(), guide().vae, class_ids=[0, 1, 2], ipc=2, guide=guide(influence=1e30), **SAMPLING)

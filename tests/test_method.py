"""The method's math: minimax terms, memories, diffusion loss and sampler, Difffit, checkpoints."""

import dataclasses

import pytest
import torch
import torch.nn.functional as F
from diffusers import DDPMScheduler

from minimaxdd import checkpoints
from minimaxdd.diffusion import GaussianDiffusion, linear_betas, respaced_timesteps, sample_latents
from minimaxdd.dit import DiT, mark_difffit_trainable
from minimaxdd.generate import generate_set, image_noise
from minimaxdd.minimax import ClassMemory, cosine_matrix, minimax_terms
from minimaxdd.sets import first_per_class, random_subset
from minimaxdd.training import LatentSet, finetune_dit
from minimaxdd.vae import build_tiny_vae, to_uint8

from conftest import TINY_DIT, tiny_dit

# -- minimax criteria -------------------------------------------------------------------------------

def test_minimax_terms_pick_least_similar_real_and_most_similar_prediction():
    e1, e2, e3 = torch.eye(3)
    real_memory, pred_memory = ClassMemory(8), ClassMemory(8)
    # class 0 memories: a real entry along the prediction, one orthogonal, one opposite (least similar)
    real_memory.push(0, torch.stack([e1, e2, -e1]))
    pred_memory.push(0, torch.stack([e2, (e1 + e2) / 2 ** 0.5, -e1]))
    pred = e1.clone().view(1, 3).requires_grad_(True)
    rep, div = minimax_terms(pred, torch.zeros(1, 3), torch.tensor([0]), real_memory, pred_memory)
    assert rep.item() == pytest.approx(1 - (-1.0))  # min cos with the opposite real entry
    assert div.item() == pytest.approx(2 ** -0.5)  # max cos with the 45-degree earlier prediction
    (rep + div).backward()
    assert pred.grad is not None and pred.grad.abs().sum() > 0


def test_plain_forms_match_the_memory_means():
    e1, e2, e3 = torch.eye(3)
    real_memory, pred_memory = ClassMemory(8), ClassMemory(8)
    real_memory.push(0, torch.stack([e1, e2]))  # mean along (1, 1, 0)
    pred_memory.push(0, torch.stack([e2, e3]))  # mean along (0, 1, 1)
    pred = torch.stack([e1, e2])
    rep, div = minimax_terms(pred, pred, torch.tensor([0, 0]), real_memory, pred_memory, "mean", "mean")
    half = 2 ** -0.5
    assert rep.item() == pytest.approx(1 - (half + half) / 2)  # both predictions at 45 degrees to the mean
    assert div.item() == pytest.approx((0 + half) / 2)
    # the minimax forms of the same memories differ: least similar real (orthogonal), most similar prediction (equal)
    real_memory, pred_memory = ClassMemory(8), ClassMemory(8)
    real_memory.push(0, torch.stack([e1, e2]))
    pred_memory.push(0, torch.stack([e2, e3]))
    rep, div = minimax_terms(pred, pred, torch.tensor([0, 0]), real_memory, pred_memory)
    assert rep.item() == pytest.approx(1.0) and div.item() == pytest.approx(1.0)


def test_a_term_switched_off_is_zero_and_bad_forms_are_refused():
    real_memory, pred_memory = ClassMemory(4), ClassMemory(4)
    pred = torch.randn(2, 3)
    minimax_terms(pred, pred, torch.tensor([0, 0]), real_memory, pred_memory)
    rep, div = minimax_terms(pred, pred, torch.tensor([0, 0]), real_memory, pred_memory, "off", "minimax")
    assert rep.item() == 0.0 and div.item() > 0
    with pytest.raises(ValueError, match="form"):
        minimax_terms(pred, pred, torch.tensor([0, 0]), real_memory, pred_memory, "median", "minimax")


def test_minimax_gradients_reach_only_the_predictions():
    real = torch.randn(4, 6, requires_grad=True)
    pred = torch.randn(4, 6, requires_grad=True)
    labels = torch.tensor([0, 0, 1, 1])
    real_memory, pred_memory = ClassMemory(4), ClassMemory(4)
    minimax_terms(pred, real, labels, real_memory, pred_memory)  # fills the memories
    rep, div = minimax_terms(pred, real, labels, real_memory, pred_memory)
    (rep + div).backward()
    assert real.grad is None
    assert pred.grad.abs().sum() > 0
    assert not real_memory.get(0).requires_grad and not pred_memory.get(1).requires_grad


def test_minimax_terms_average_over_classes_in_batch():
    real_memory, pred_memory = ClassMemory(4), ClassMemory(4)
    real_memory.push(0, torch.tensor([[1.0, 0.0]]))
    pred_memory.push(0, torch.tensor([[1.0, 0.0]]))
    pred = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    # class 1 has empty memories: it contributes nothing but still counts in the average
    rep, div = minimax_terms(pred, pred, torch.tensor([0, 1]), real_memory, pred_memory)
    assert rep.item() == pytest.approx(0.0)
    assert div.item() == pytest.approx(0.5)


def test_empty_memories_give_zero_terms_and_are_then_filled():
    real_memory, pred_memory = ClassMemory(4), ClassMemory(4)
    pred = torch.randn(3, 5, requires_grad=True)
    rep, div = minimax_terms(pred, torch.randn(3, 5), torch.tensor([2, 2, 1]), real_memory, pred_memory)
    assert rep.item() == 0.0 and div.item() == 0.0
    assert len(real_memory.get(2)) == 2 and len(pred_memory.get(1)) == 1


def per_class_loop(preds, labels, reals_of, earlier_of, rep_form, div_form):
    """The criteria as the authors' loop computes them, one class at a time (the spec of the batched code)."""
    rep = div = torch.zeros(())
    classes = labels.unique().tolist()
    for c in classes:
        p = preds[labels == c].flatten(1)
        reals, earlier = reals_of(c), earlier_of(c)
        if reals is not None:
            rep = rep + (1 - (cosine_matrix(p, reals).min() if rep_form == "minimax"
                              else F.cosine_similarity(p, reals.mean(0, keepdim=True)).mean()))
        if earlier is not None:
            div = div + (cosine_matrix(p, earlier).max() if div_form == "minimax"
                         else F.cosine_similarity(p, earlier.mean(0, keepdim=True)).mean())
    return rep / len(classes), div / len(classes)


@pytest.mark.parametrize("classes", [None, 6])  # memories that grow as labels appear, or sized up front
@pytest.mark.parametrize("forms", [("minimax", "minimax"), ("mean", "mean")])
def test_batched_terms_and_gradients_equal_the_per_class_loop(forms, classes):
    """Several classes, memories wrapped around their rings, a class new to the memories, a class
    with more samples than the memory holds: values and gradients as the per-class loop's."""
    gen = torch.Generator().manual_seed(0)
    real_memory, pred_memory = ClassMemory(5, classes), ClassMemory(5, classes)
    for _ in range(3):  # 3 x 8 pushes over 4 classes: the rings of 5 wrap
        labels = torch.randint(4, (8,), generator=gen)
        minimax_terms(torch.randn(8, 2, 3, generator=gen), torch.randn(8, 2, 3, generator=gen), labels,
                      real_memory, pred_memory, *forms)
    labels = torch.tensor([0, 0, 1, 3, 5, 5, 5, 5, 5, 5, 5])  # class 5 is new and has 7 > 5 samples
    pred = torch.randn(len(labels), 2, 3, generator=gen, requires_grad=True)
    reals_before = {c: real_memory.get(c) for c in range(6)}
    earlier_before = {c: pred_memory.get(c) for c in range(6)}
    rep, div = minimax_terms(pred, torch.randn(len(labels), 2, 3, generator=gen), labels, real_memory,
                             pred_memory, *forms)
    grad, = torch.autograd.grad(rep + 2 * div, pred)
    pred_loop = pred.detach().clone().requires_grad_(True)
    rep_loop, div_loop = per_class_loop(pred_loop, labels, reals_before.get, earlier_before.get, *forms)
    grad_loop, = torch.autograd.grad(rep_loop + 2 * div_loop, pred_loop)
    assert torch.allclose(rep, rep_loop, atol=1e-6) and torch.allclose(div, div_loop, atol=1e-6)
    assert torch.allclose(grad, grad_loop, atol=1e-6)
    assert rep.item() > 0 and div.item() != 0
    # the memories now hold the last 5 of class 5, oldest first, and class 0's two new entries last
    assert torch.equal(pred_memory.get(5), pred.detach()[-5:].flatten(1))
    assert torch.equal(pred_memory.get(0)[-2:], pred.detach()[:2].flatten(1))


def test_class_memory_is_fifo_with_bounded_size():
    memory = ClassMemory(3)
    assert memory.get(0) is None
    memory.push(0, torch.arange(2.0).view(2, 1))
    memory.push(0, torch.arange(2.0, 5.0).view(3, 1))
    assert memory.get(0).flatten().tolist() == [2.0, 3.0, 4.0]  # the oldest two were dropped
    memory.push(1, torch.ones(1, 2, 2))  # stored flattened
    assert memory.get(1).shape == (1, 4) and len(memory) == 4
    with pytest.raises(ValueError, match="memory size"):
        ClassMemory(0)


def test_cosine_matrix():
    a = torch.tensor([[1.0, 0.0], [1.0, 1.0]])
    b = torch.tensor([[2.0, 0.0], [0.0, -3.0]])
    expected = torch.tensor([[1.0, 0.0], [2 ** -0.5, -(2 ** -0.5)]])
    assert torch.allclose(cosine_matrix(a, b), expected, atol=1e-6)


# -- diffusion ------------------------------------------------------------------------------------

def test_respaced_timesteps_match_adm_and_diffusers_linspace():
    scheduler = DDPMScheduler(beta_schedule="linear", variance_type="learned_range", clip_sample=False,
                              timestep_spacing="linspace")
    scheduler.set_timesteps(50)
    assert respaced_timesteps(50)[::-1] == scheduler.timesteps.tolist()
    assert respaced_timesteps(50)[:3] == [0, 20, 41] and respaced_timesteps(50)[-1] == 999
    assert respaced_timesteps(1000) == list(range(1000))
    with pytest.raises(ValueError):
        respaced_timesteps(1)


@pytest.mark.parametrize("index", [49, 25, 1, 0])
def test_learned_variance_step_matches_diffusers(index):
    scheduler = DDPMScheduler(beta_schedule="linear", variance_type="learned_range", clip_sample=False,
                              timestep_spacing="linspace")
    scheduler.set_timesteps(50)
    diffusion = GaussianDiffusion.respaced(50)
    torch.manual_seed(0)
    x, model_out = torch.randn(2, 4, 4, 4), torch.randn(2, 8, 4, 4).clamp(-1, 1)
    t = int(diffusion.timestep_map[index])
    expected = scheduler.step(model_out, t, x, generator=torch.Generator().manual_seed(7)).prev_sample
    noise = torch.randn(x.shape, generator=torch.Generator().manual_seed(7))
    assert torch.allclose(diffusion.p_step(model_out, x, index, noise), expected, atol=1e-4)


def test_training_loss_terms_and_predicted_x0():
    diffusion = GaussianDiffusion(linear_betas())
    x0, noise = torch.randn(3, 2, 4, 4), torch.randn(3, 2, 4, 4)
    t = torch.tensor([0, 500, 999])

    def oracle(x_t, timesteps, y):  # predicts the true noise and a mid-range variance
        return torch.cat([noise, torch.zeros_like(noise)], dim=1)

    terms = diffusion.training_losses(oracle, x0, t, torch.zeros(3, dtype=torch.long), noise)
    assert torch.allclose(terms["pred_x0"], x0, atol=1e-4)
    assert torch.allclose(terms["mse"], torch.zeros(3))
    assert torch.isfinite(terms["vb"]).all() and (terms["vb"] >= 0).all()
    assert torch.allclose(terms["loss"], terms["mse"] + terms["vb"])


def test_sampler_with_guidance_runs_all_respaced_steps():
    model = tiny_dit()
    steps = 5
    calls = []
    original = model.forward_with_guidance

    def spy(x, t, y, scale, channels):
        calls.append(int(t[0]))
        return original(x, t, y, scale, channels)

    model.forward_with_guidance = spy
    noise = torch.randn(steps + 1, 2, 2, 4, 4)
    out = sample_latents(model, GaussianDiffusion.respaced(steps), torch.tensor([0, 1]), noise, 4.0)
    assert calls == respaced_timesteps(steps)[::-1]
    assert out.shape == (2, 2, 4, 4) and torch.isfinite(out).all()


def test_guidance_leaves_the_unguided_channels_and_the_variance_conditional():
    """The reference's forward_with_cfg guides eps[:, :3] of 4 channels; channel 3 and the variance
    are the conditional pass's (MinimaxDiffusion models.py L318-334)."""
    model = tiny_dit(config=dataclasses.replace(TINY_DIT, in_channels=4))
    x, t, y = torch.randn(2, 4, 4, 4), torch.tensor([500, 20]), torch.tensor([0, 1])
    with torch.no_grad():
        cond = model(x, t, y)
        uncond = model(x, t, torch.full_like(y, model.num_classes))
        guided = model.forward_with_guidance(x, t, y, 4.0, channels=3)
        every = model.forward_with_guidance(x, t, y, 4.0)
    expected = uncond[:, :3] + 4.0 * (cond[:, :3] - uncond[:, :3])
    assert torch.allclose(guided[:, :3], expected, atol=1e-5)
    assert torch.allclose(guided[:, 3:], cond[:, 3:], atol=1e-6)  # channel 3 and the 4 variance channels
    assert torch.allclose(every[:, :4], uncond[:, :4] + 4.0 * (cond[:, :4] - uncond[:, :4]), atol=1e-5)
    assert not torch.allclose(guided[:, 3], every[:, 3])


# -- Difffit ----------------------------------------------------------------------------------------

def test_difffit_trainable_set():
    model = DiT(TINY_DIT)
    names = set(mark_difffit_trainable(model))
    assert "y_embedder.embedding_table.weight" in names
    assert {"blocks.0.gamma1", "blocks.1.attn.gamma2", "blocks.0.attn.gamma1"} <= names
    assert not any(n.startswith(("blocks.2.", "blocks.3.")) and "gamma" in n for n in names)  # second half
    assert "blocks.3.attn.qkv.bias" in names and "blocks.3.attn.qkv.weight" not in names
    assert "pos_embed" not in names and "x_embedder.proj.weight" not in names
    assert all(("bias" in n or "gamma" in n or "y_embed" in n) for n in names)
    frozen = [n for n, p in model.named_parameters() if not p.requires_grad]
    assert "final_layer.linear.weight" in frozen
    assert model.blocks[0].attn.gamma1.shape == (3 * TINY_DIT.hidden_size,)


def test_gammas_start_as_identity():
    gammas = [p for name, p in DiT(TINY_DIT).named_parameters() if "gamma" in name]
    assert gammas and all(torch.equal(p, torch.ones_like(p)) for p in gammas)
    model = tiny_dit()
    x, t, y = torch.randn(2, 2, 4, 4), torch.tensor([3, 700]), torch.tensor([0, 2])
    before = model(x, t, y)
    with torch.no_grad():
        model.blocks[0].gamma1.mul_(0.5)
    assert not torch.allclose(model(x, t, y), before)


def test_finetune_changes_only_difffit_parameters_and_logs_three_terms():
    model = tiny_dit()
    base = {k: v.clone() for k, v in model.state_dict().items()}
    cache = {"mean": torch.randn(12, 2, 2, 4, 4).half(), "std": torch.full((12, 2, 2, 4, 4), 0.1).half(),
             "scaling_factor": 1.0, "labels": torch.arange(12) % 3, "class_ids": [0, 1, 2]}
    params, ema, rows = finetune_dit(model, LatentSet(cache, torch.device("cpu")), representativeness="minimax",
                                     diversity="minimax",
                                     batch_size=4, epochs=2, lr=1e-2, ema_decay=0.5, memory_size=4,
                                     rep_weight=0.002, div_weight=0.008, seed=0, device=torch.device("cpu"),
                                     log=lambda _: None)
    assert len(rows) == 6 and {"diffusion", "representativeness", "diversity"} <= set(rows[0])
    assert rows[0]["diversity"] == 0.0 and rows[-1]["diversity"] > 0  # memories empty only at first
    changed = {k for k, v in model.state_dict().items() if not torch.equal(v, base[k])}
    assert changed and changed <= set(params) and set(params) == set(ema)


def test_finetune_stops_after_train_steps_when_given():
    """The reference samples its step-12000 checkpoint, not the end of epoch 8 (run.sh)."""
    cache = {"mean": torch.randn(12, 2, 2, 4, 4).half(), "std": torch.full((12, 2, 2, 4, 4), 0.1).half(),
             "scaling_factor": 1.0, "labels": torch.arange(12) % 3, "class_ids": [0, 1, 2]}
    settings = dict(representativeness="off", diversity="off", batch_size=4, epochs=2, lr=1e-2, ema_decay=0.5,
                    seed=0, device=torch.device("cpu"), log=lambda _: None)
    latents = LatentSet(cache, torch.device("cpu"))
    assert len(finetune_dit(tiny_dit(), latents, train_steps=4, **settings)[2]) == 4
    assert len(finetune_dit(tiny_dit(), latents, train_steps=None, **settings)[2]) == 6  # 2 epochs of 3 batches


def test_checkpoint_round_trip_and_difffit_delta(tmp_path):
    model = tiny_dit()
    checkpoints.save_dit(model, tmp_path / "dit")
    loaded = checkpoints.load_dit(tmp_path / "dit")
    x, t, y = torch.randn(2, 2, 4, 4), torch.tensor([3, 700]), torch.tensor([0, 2])
    assert torch.equal(loaded(x, t, y), model(x, t, y))

    names = mark_difffit_trainable(model)
    delta = {n: torch.full_like(p, 0.3) for n, p in model.named_parameters() if n in names}
    checkpoints.save_difffit(delta, {k: v.clone() for k, v in delta.items()}, tmp_path / "delta.safetensors", {"method": "test"})
    checkpoints.apply_difffit(loaded, tmp_path / "delta.safetensors")
    assert torch.all(loaded.blocks[0].gamma1 == 0.3)


def test_checkpoint_errors_name_the_path_and_keys(tmp_path):
    with pytest.raises(checkpoints.CheckpointError, match="config.json"):
        checkpoints.load_dit(tmp_path)
    model = DiT(TINY_DIT)
    state = model.state_dict()
    state["blocks.0.attn.qkv.weight"] = torch.zeros(5, 5)
    with pytest.raises(checkpoints.CheckpointError, match=r"blocks\.0\.attn\.qkv\.weight"):
        checkpoints.load_into(DiT(TINY_DIT), state, source="weights.pt")


# -- generation and real subsets ------------------------------------------------------------------

def test_ipc_prefix_property_holds_across_batch_sizes():
    model = tiny_dit()
    torch.manual_seed(0)
    vae = build_tiny_vae(channels=1, resolution=8, block_channels=[8, 8], latent_channels=2).eval()
    common = dict(class_ids=[0, 2], steps=4, guidance_scale=2.0, guidance_channels=3, precision="fp32", sampler="ddpm",
                  eta=0.0, seed=5, device=torch.device("cpu"))
    small, small_labels = generate_set(model, vae, ipc=2, batch_size=3, **common)
    large, large_labels = generate_set(model, vae, ipc=3, batch_size=4, **common)
    auto, auto_labels = generate_set(model, vae, ipc=3, batch_size="auto", **common)  # 64 on the CPU: one batch
    assert torch.equal(auto, large) and torch.equal(auto_labels, large_labels)
    for c in range(2):
        assert torch.equal(large[large_labels == c][:2], small[small_labels == c])
    assert not torch.equal(large[large_labels == 0][0], large[large_labels == 1][0])
    assert torch.equal(image_noise(5, 1, 0, 4, (2, 4, 4)), image_noise(5, 1, 0, 4, (2, 4, 4)))
    assert not torch.equal(image_noise(5, 1, 0, 4, (2, 4, 4)), image_noise(5, 1, 1, 4, (2, 4, 4)))


def test_random_subset_is_a_prefix_per_class_and_checks_ipc():
    labels = torch.tensor([0] * 5 + [1] * 4)
    three, two = random_subset(labels, 3, seed=1), random_subset(labels, 2, seed=1)
    assert torch.bincount(labels[three]).tolist() == [3, 3]
    assert set(two.tolist()) <= set(three.tolist())
    with pytest.raises(ValueError, match="IPC 5 exceeds the 4"):
        random_subset(labels, 5, seed=1)


def test_the_sorted_random_set_is_the_first_images_of_each_class_as_the_reference():
    # MD data.py L138-165: the first IPC samples of each class of a sorted ImageFolder
    labels = torch.tensor([1, 0, 0, 1, 0, 1, 1])
    assert first_per_class(labels, 2).tolist() == [1, 2, 0, 3]
    with pytest.raises(ValueError, match="IPC 4 exceeds the 3"):
        first_per_class(labels, 4)


def test_ema_and_fused_adamw_are_the_reference_updates():
    """The trainer's foreach EMA and fused AdamW against the reference's per-tensor loops
    (train_dit.py update_ema: ema.mul_(decay).add_(param, alpha=1 - decay); plain AdamW)."""
    from minimaxdd.training import update_ema

    gen = torch.Generator().manual_seed(0)
    params = {f"p{i}": torch.nn.Parameter(torch.randn(5, 3, generator=gen)) for i in range(3)}
    copies = {k: torch.nn.Parameter(p.detach().clone()) for k, p in params.items()}
    fused = torch.optim.AdamW(params.values(), lr=0.01, weight_decay=0, fused=True)
    loop = torch.optim.AdamW(copies.values(), lr=0.01, weight_decay=0, foreach=False)
    ema = {k: p.detach().clone() for k, p in params.items()}
    ema_loop = {k: p.detach().clone() for k, p in params.items()}
    for _ in range(20):
        targets = torch.randn(5, 3, generator=gen)
        for group, opt in ((params, fused), (copies, loop)):
            opt.zero_grad()
            sum(((p - targets) ** 2).sum() for p in group.values()).backward()
            opt.step()
        update_ema(ema, params, 0.9)
        for k, p in copies.items():
            ema_loop[k].mul_(0.9).add_(p.detach(), alpha=0.1)
    for k in params:
        assert torch.allclose(params[k], copies[k], atol=1e-6) and not torch.equal(params[k], ema[k])
        assert torch.allclose(ema[k], ema_loop[k], atol=1e-6)


def test_images_are_quantised_as_the_reference_saves_them():
    # torchvision 0.14 save_image(normalize=True, value_range=(-1, 1)), which MD sample.py L88-90
    # calls: clamp, (x - low) / (high - low), then mul(255).add_(0.5).clamp_(0, 255) to uint8
    x = torch.cat([torch.linspace(-1.2, 1.2, 4001), (torch.arange(255) + 0.5) / 127.5 - 1])  # with half steps
    reference = ((x.clamp(-1, 1) + 1) / 2).mul(255).add_(0.5).clamp_(0, 255).to(torch.uint8)
    assert torch.equal(to_uint8(x), reference)


def test_the_latent_cache_holds_each_images_and_its_flips_posterior_in_float16():
    from minimaxdd.vae import encode_images, to_model_range

    torch.manual_seed(0)
    vae = build_tiny_vae(3, 16, [8, 8], 2).eval()
    images = torch.randint(0, 256, (3, 3, 16, 16), dtype=torch.uint8)
    cache = encode_images(vae, images, 2, torch.device("cpu"))
    assert cache["mean"].shape == (3, 2, 2, 8, 8) and cache["mean"].dtype == torch.float16
    with torch.no_grad():
        flipped = vae.encode(to_model_range(images).flip(-1)).latent_dist
    # the reference samples a posterior of the (flipped) image each step; the cache rounds it to float16
    torch.testing.assert_close(cache["mean"][:, 1].float(), flipped.mean, rtol=2 ** -10, atol=1e-4)
    torch.testing.assert_close(cache["std"][:, 1].float(), flipped.std, rtol=2 ** -10, atol=1e-4)
    assert cache["scaling_factor"] == vae.config.scaling_factor

"""The `speed` switches change how a job runs, not what it computes: compiled DiT passes and
channels-last validation nets give the eager / contiguous results up to float rounding."""

import dataclasses

import torch
import torch._dynamo

from minimaxdd.diffusion import GaussianDiffusion, sample_latents
from minimaxdd.dit import DiT, mark_difffit_trainable
from minimaxdd.training import LatentSet, Trainer

from conftest import TINY_DIT, train_hard

SHALLOW_DIT = dataclasses.replace(TINY_DIT, depth=2)
MINIMAX = {"memory_size": 4, "rep_weight": 0.5, "div_weight": 0.5, "representativeness": "minimax",
           "diversity": "minimax"}


def tiny_trainer(compile: bool) -> Trainer:
    torch.manual_seed(0)
    model = DiT(SHALLOW_DIT)
    with torch.no_grad():  # adaLN-Zero makes a fresh DiT output zeros
        for p in model.parameters():
            p.add_(0.05 * torch.randn_like(p))
    trainable = mark_difffit_trainable(model)
    params = {k: p for k, p in model.named_parameters() if k in trainable}
    return Trainer(model, params, 1e-2, 0.9, 0, torch.device("cpu"), MINIMAX, compile=compile)


def test_compiled_fine_tuning_and_sampling_follow_the_eager_ones():
    gen = torch.Generator().manual_seed(1)
    cache = {"mean": torch.randn(12, 2, 2, 4, 4).half(), "std": torch.full((12, 2, 2, 4, 4), 0.1).half(),
             "scaling_factor": 1.0, "labels": torch.arange(12) % 3, "class_ids": [0, 1, 2]}
    latents = LatentSet(cache, torch.device("cpu"))
    batches = [torch.randperm(12, generator=gen)[:6] for _ in range(3)]
    runs = []
    for compile in (False, True):  # one after the other: label dropout draws from the global RNG
        trainer = tiny_trainer(compile)
        runs.append((trainer, [trainer.step(latents, index) for index in batches]))
    (eager, eager_losses), (fast, fast_losses) = runs
    assert hasattr(fast.forward, "_orig_mod") and not hasattr(eager.forward, "_orig_mod")  # compiled, or not
    for a, b in zip(eager_losses, fast_losses):  # other dropout draws would part them by ~1e-3
        assert abs(a.total - b.total) < 1e-6 and abs(a.diversity - b.diversity) < 1e-6
    for name, param in eager.params.items():
        # Adam scales rounding noise up where the true gradient is 0 (the key bias: softmax ignores it)
        assert torch.allclose(param, fast.params[name], atol=1e-3), name

    model = eager.model.eval()
    noise = torch.randn(4, 3, 2, 4, 4, generator=gen)
    labels = torch.tensor([0, 1, 2])
    diffusion = GaussianDiffusion.respaced(3)
    plain = sample_latents(model, diffusion, labels, noise, 4.0, guidance_channels=1)
    torch._dynamo.utils.counters.clear()  # the compiled sampling must capture its own frame
    compiled = sample_latents(model, diffusion, labels, noise, 4.0, guidance_channels=1, compile=True)
    assert torch._dynamo.utils.counters["frames"]["ok"] >= 1
    assert torch.allclose(plain, compiled, atol=1e-4) and plain.abs().sum() > 0


def test_channels_last_validation_trains_the_same_net():
    gen = torch.Generator().manual_seed(0)
    x, y = torch.randint(0, 256, (40, 3, 16, 16), dtype=torch.uint8, generator=gen), torch.arange(40) % 4
    runs = [train_hard(x, y, num_classes=4, epochs=3, width_factor=0.25, channels_last=flag)[0]
            for flag in (False, True)]
    (plain, plain_record), (fast, fast_record) = runs
    assert not plain_record["channels_last"] and fast_record["channels_last"]
    conv = next(m for m in fast.modules() if isinstance(m, torch.nn.Conv2d))
    assert conv.weight.is_contiguous(memory_format=torch.channels_last)
    for (name, a), b in zip(plain.state_dict().items(), fast.state_dict().values()):
        assert torch.allclose(a, b, atol=1e-4), name
    assert abs(plain_record["final_loss"] - fast_record["final_loss"]) < 1e-4


def test_channels_last_groups_train_in_loop_mode_and_records_what_ran():
    x, y = torch.randint(0, 256, (24, 3, 16, 16), dtype=torch.uint8), torch.arange(24) % 4
    for mode, used in (("loop", True), ("vmap", False)):
        runs = train_hard(x, y, seeds=[0, 1], num_classes=4, epochs=1, width_factor=0.25, mode=mode,
                          channels_last=True)
        assert [record["channels_last"] for _, record in runs] == [used, used], mode

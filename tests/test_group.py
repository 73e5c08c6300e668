"""Groups of seeds: several seeds trained in one job give the records of the runs alone."""

import pytest
import torch

from conftest import hard_label, toy_split, train_hard
from minimaxdd.augment import augment_batch, beta_sample, cutmix
from minimaxdd.classifier import build_run, group_mode
from minimaxdd.nets import build_net
from minimaxdd.resume import Checkpointer
from minimaxdd.validate import HardLabelSteps, train_and_evaluate


def settings(arch="convnet", epochs=3, **extra):
    return dict(arch=arch, epochs=epochs, width_factor=0.125, batch_size=5, evaluations=3,
                test=toy_split(2, seed=1)) | extra


def train_alone(train_x, train_y, seeds, **s):
    """Each seed in a group of its own."""
    return [train_hard(train_x, train_y, seeds=[seed], **s)[0] for seed in seeds]


@pytest.mark.parametrize("kind", ["idc", "crop_flip"])
def test_a_generator_draws_as_the_global_rng_seeded_alike(kind):
    x = torch.rand(6, 3, 12, 12, generator=torch.Generator().manual_seed(0))
    y = torch.arange(6)
    torch.manual_seed(7)
    want = augment_batch(x, kind)
    want_mix = cutmix(want, y)
    after = torch.rand(4)  # the global RNG's state after the draws
    g = torch.Generator().manual_seed(7)
    torch.manual_seed(123)  # the global RNG must not be used
    got = augment_batch(x, kind, generator=g)
    got_mix = cutmix(got, y, generator=g)
    assert torch.equal(got, want)
    assert torch.equal(got_mix[0], want_mix[0]) and torch.equal(got_mix[2], want_mix[2])
    assert got_mix[3] == want_mix[3]
    assert torch.equal(torch.rand(4, generator=g), after)
    torch.manual_seed(3)
    first = beta_sample(1.0)
    assert beta_sample(1.0, torch.Generator().manual_seed(3)) == first


def test_a_run_is_built_as_the_run_alone_and_the_global_rng_is_left_alone():
    torch.manual_seed(11)
    want = build_net("resnetap10", 1, 3, 16, 0.125)
    want_next = torch.rand(5)
    torch.manual_seed(99)
    before = torch.get_rng_state()
    net, rng = build_run(11, lambda: build_net("resnetap10", 1, 3, 16, 0.125), torch.device("cpu"))
    assert torch.equal(torch.get_rng_state(), before)
    assert all(torch.equal(a, b) for a, b in zip(net.state_dict().values(), want.state_dict().values()))
    assert rng.cpu is rng.device and torch.equal(torch.rand(5, generator=rng.cpu), want_next)
    order = torch.Generator().manual_seed(11)  # a run alone's data order
    assert torch.equal(torch.randperm(9, generator=rng.order), torch.randperm(9, generator=order))


def assert_same_runs(alone, packed, exact=True, atol=0.0):
    for (model, record), (packed_model, packed_record) in zip(alone, packed):
        assert packed_record["seed"] == record["seed"] and packed_record["group_size"] == len(packed)
        assert packed_record["curve"] == record["curve"]
        for key in ("accuracy_last", "accuracy_best", "best_epoch"):
            assert packed_record[key] == record[key]
        for (name, a), b in zip(model.state_dict().items(), packed_model.state_dict().values()):
            if exact:
                assert torch.equal(a, b), name
            else:
                torch.testing.assert_close(b, a, atol=atol, rtol=0, msg=name)
        if exact:
            assert packed_record["final_loss"] == record["final_loss"]
        else:
            assert abs(packed_record["final_loss"] - record["final_loss"]) <= 1e-5


@pytest.mark.parametrize("arch", ["convnet", "resnet18"])
def test_a_loop_pack_equals_the_runs_alone_bit_for_bit(arch):
    train_x, train_y = toy_split(4, seed=0)  # 12 images, batch 5: steps of 5, 5, 2
    s = settings(arch)
    alone = train_alone(train_x, train_y, (3, 5), **s)
    packed = train_hard(train_x, train_y, seeds=[3, 5], mode="loop", **s)
    assert_same_runs(alone, packed)
    assert packed[0][1]["group_mode"] == "loop"


@pytest.mark.parametrize("arch", ["convnet", "resnetap10"])
def test_a_vmap_pack_equals_the_runs_alone_up_to_rounding(arch):
    # Same draws, other kernels (grouped convolutions): weights within 1e-5 after 2 epochs (6
    # steps; measured <= 1.2e-7 on an AVX2 CPU), the same accuracy curves. Not more epochs: this tiny
    # training amplifies rounding (ResNetAP-10, seed 3, on that CPU: 1.2e-7, 4e-6, 1.3e-4 after 2,
    # 3, 4 epochs). ResNet-18 at 16 px is left out: its instance norm over 2 x 2 maps makes training
    # chaotic at the rounding level (a 1e-7 relative change of the initial weights of a run alone
    # moves its weights by O(1) within 2 epochs).
    train_x, train_y = toy_split(4, seed=0)
    s = settings(arch, epochs=2, evaluations=2)
    alone = train_alone(train_x, train_y, (3, 5), **s)
    packed = train_hard(train_x, train_y, seeds=[3, 5], mode="vmap", **s)
    assert_same_runs(alone, packed, exact=False, atol=1e-5)


@pytest.mark.parametrize("mode,steps_per_epoch", [("loop", 6), ("vmap", 3)])
def test_a_resumed_pack_equals_an_uninterrupted_one(mode, steps_per_epoch, tmp_path, monkeypatch):
    train_x, train_y = toy_split(3, seed=0)  # 9 images, batch 4: 3 steps per epoch and run
    s = settings(epochs=6, batch_size=4, evaluations=3)
    expected = train_hard(train_x, train_y, seeds=[1, 2], mode=mode, **s)
    checkpointer = Checkpointer(tmp_path / "resume.pt", every=2, fingerprint="pack")
    real_step, count = torch.optim.SGD.step, {"n": 0}

    def step(self, *args, **kwargs):
        count["n"] += 1
        if count["n"] > 4 * steps_per_epoch + 1:  # in epoch 5, after the checkpoint of epoch 4
            raise KeyboardInterrupt
        return real_step(self, *args, **kwargs)

    with monkeypatch.context() as patch:
        patch.setattr(torch.optim.SGD, "step", step)
        with pytest.raises(KeyboardInterrupt):
            train_hard(train_x, train_y, seeds=[1, 2], mode=mode, checkpointer=checkpointer, **s)
    saved = torch.load(tmp_path / "resume.pt", weights_only=False)
    assert saved["step"] == 4 and [c[:2] for c in saved["curves"]] == [r["curve"][:2] for _, r in expected]
    resumed = train_hard(train_x, train_y, seeds=[1, 2], mode=mode, checkpointer=checkpointer, **s)
    assert_same_runs(expected, resumed)
    other = Checkpointer(tmp_path / "resume.pt", every=2, fingerprint="pack", log=lambda _: None)
    restarted = train_hard(train_x, train_y, seeds=[2, 1], mode=mode, checkpointer=other, **s)  # another group
    assert_same_runs(expected, restarted[::-1])


def test_a_group_of_one_is_the_run_alone_and_bad_groups_are_refused():
    train_x, train_y = toy_split(3, seed=0)
    s = settings(epochs=2)
    test_x, test_y = s.pop("test")
    protocol = hard_label(width_factor=0.125, batch_size=5, evaluations=3)
    run = dict(num_classes=3, epochs=2, device="cpu", mode="loop", channels_last=False, progress=False,
               checkpointer=None)
    (alone,) = train_and_evaluate(protocol, "convnet", train_x, train_y, test_x, test_y, seeds=[4], **run)
    grouped = train_and_evaluate(protocol, "convnet", train_x, train_y, test_x, test_y, seeds=[3, 4], **run)[1]
    assert {k: v for k, v in grouped.items() if k not in ("wall_s", "group_size", "group_wall_s")} == \
        {k: v for k, v in alone.items() if k not in ("wall_s", "group_size", "group_wall_s")}
    assert (grouped["group_size"], alone["group_size"], alone["resolution"]) == (2, 1, 16)
    for seeds, message in (([], "empty"), ([1, 1], "differ")):
        with pytest.raises(ValueError, match=message):
            train_hard(train_x, train_y, seeds=seeds, **s)
    with pytest.raises(ValueError, match="valid names"):
        train_hard(train_x, train_y, seeds=[1], mode="nope", **s)
    steps = HardLabelSteps("convnet", protocol)
    assert group_mode("auto", "cpu", steps) == "loop" and group_mode("auto", "cuda", steps) == "vmap"

"""Validation networks, batch augmentation and the train-then-test loop of the IDC protocol."""

import math

import pytest
import torch

import numpy as np
from PIL import Image

from conftest import assert_resumes_bit_for_bit, hard_label, toy_split, train_hard
from minimaxdd.augment import augment_batch, cutmix, random_flip, random_resized_crop
from minimaxdd.classifier import evaluate
from minimaxdd.nets import ARCHS, arch_label, build_net, convnet_depth
from minimaxdd.validate import evaluation_epochs, resize_for_validation, train_and_evaluate

# Parameter counts of IDC's nets for 3 x 224 / 256 px images and 10 classes, built from
# snu-mllab/Efficient-Dataset-Condensation models/convnet.py (ConvNet depth 6, width 128, instance
# norm), models/resnet_ap.py (ResNetAP depth 10) and models/resnet.py (ResNet depth 18), as
# train.py L35-67 defines them (identical in vimar-gu/MinimaxDiffusion train_models/).
REFERENCE_PARAMS = {
    224: {"convnet": 754_570, "resnetap10": 4_910_922, "resnet18": 11_181_642},
    256: {"convnet": 763_530, "resnetap10": 4_910_922, "resnet18": 11_181_642},
}


@pytest.mark.parametrize("arch", ARCHS)
@pytest.mark.parametrize("channels,resolution", [(1, 16), (3, 64), (3, 128)])
def test_nets_give_logits_per_class(arch, channels, resolution):
    net = build_net(arch, channels, 7, resolution)
    with torch.no_grad():
        assert net(torch.randn(2, channels, resolution, resolution)).shape == (2, 7)


def test_convnet_depth_and_labels_follow_resolution():
    assert [convnet_depth(r) for r in (16, 32, 64, 128, 256, 512)] == [3, 3, 4, 5, 6, 6]
    assert arch_label("convnet", 32) == "ConvNet-3"
    assert arch_label("convnet", 256) == "ConvNet-6"
    assert arch_label("resnetap10", 256) == "ResNetAP-10"
    assert arch_label("resnet18", 64) == "ResNet-18"
    with torch.no_grad():
        assert build_net("convnet", 3, 10, 256)(torch.randn(1, 3, 256, 256)).shape == (1, 10)


def test_unknown_arch_names_the_valid_ones():
    with pytest.raises(ValueError) as err:
        build_net("nope", 3, 10, 32)
    assert all(name in str(err.value) for name in ARCHS)


@pytest.mark.parametrize("resolution", sorted(REFERENCE_PARAMS))
@pytest.mark.parametrize("arch", ARCHS)
def test_nets_have_the_reference_parameter_counts(arch, resolution):
    net = build_net(arch, 3, 10, resolution)
    assert sum(p.numel() for p in net.parameters()) == REFERENCE_PARAMS[resolution][arch]


def test_gray_convnet_pads_its_first_conv_by_three_as_idc():
    net = build_net("convnet", 1, 10, 28, width_factor=0.125)
    assert net.features[0].padding == (3, 3) and net.features[4].padding == (1, 1)
    assert net.classifier.in_features == 16 * 4 * 4  # IDC sizes 28 px gray images as 32 px
    with torch.no_grad():
        assert net(torch.randn(2, 1, 28, 28)).shape == (2, 10)


def test_resnetap_has_no_strided_layer():
    strided = [m for m in build_net("resnetap10", 3, 10, 256).modules()
               if isinstance(m, torch.nn.Conv2d) and m.stride != (1, 1)]
    assert strided == []


def test_augmentations_keep_shape():
    torch.manual_seed(0)
    x = torch.rand(5, 3, 16, 24)
    assert augment_batch(x).shape == x.shape
    assert random_resized_crop(x).shape == x.shape


def test_no_augmentation_batch_is_the_normalized_images_with_their_own_labels():
    """validate.augment none (the no_augment protocol, DD-Ranking's `use_aug=False`): no crop, flip,
    jitter or CutMix; the loss is plain cross-entropy on the images' own labels."""
    from minimaxdd.augment import normalize
    from minimaxdd.classifier import RunRandom
    from minimaxdd.validate import HardLabelSteps

    x, y = toy_split(per_class=4, seed=0)
    idx = torch.tensor([5, 0, 7])
    rng = RunRandom(*(torch.Generator().manual_seed(s) for s in (0, 1, 2)))
    plain = HardLabelSteps("convnet", hard_label(augment="none"))
    images, (y_a, y_b, lam) = plain.batch(x, y, idx, rng)
    assert torch.equal(images, normalize(x[idx].float() / 255, "imagenet"))
    assert torch.equal(y_a, y[idx]) and torch.equal(y_b, y[idx]) and lam == 1.0
    logits = torch.randn(3, 3)
    assert torch.equal(plain.loss(logits, (y_a, y_b, lam)), torch.nn.functional.cross_entropy(logits, y[idx]))
    augmented, _ = HardLabelSteps("convnet", hard_label()).batch(x, y, idx, rng)
    assert not torch.equal(augmented, images)


def test_flip_mirrors_left_right():
    x = torch.arange(2 * 1 * 3 * 4, dtype=torch.float32).reshape(2, 1, 3, 4)
    assert torch.equal(random_flip(x, p=1.0), x.flip(-1))
    assert torch.equal(random_flip(x, p=0.0), x)


def test_resized_crop_of_whole_image_is_identity():
    torch.manual_seed(0)
    x = torch.rand(4, 3, 16, 16)
    torch.testing.assert_close(random_resized_crop(x, scale=(1, 1), ratio=(1, 1)), x)


def test_resized_crop_zooms_into_a_box_of_the_requested_area():
    # On a left-to-right ramp from 0 to 1, a box a quarter of the area (half the width) spans 0.5.
    torch.manual_seed(0)
    ramp = torch.linspace(0, 1, 32).expand(8, 1, 32, 32)
    out = random_resized_crop(ramp, scale=(0.25, 0.25), ratio=(1, 1))
    span = out[..., -1] - out[..., 0]
    torch.testing.assert_close(span, torch.full_like(span, 0.5), atol=0.02, rtol=0)


def test_cutmix_lambda_is_the_unchanged_area_fraction():
    x = torch.arange(8, dtype=torch.float32).reshape(8, 1, 1, 1).expand(8, 3, 20, 20)
    y = torch.arange(8)
    for seed in range(20):
        torch.manual_seed(seed)
        mixed, y_a, y_b, lam = cutmix(x, y)
        assert 0.0 <= lam <= 1.0
        assert torch.equal(y_a, y) and torch.equal(y_b.sort().values, y)
        kept = (mixed == x).float().mean(dim=(1, 2, 3))
        moved = y_b != y_a  # images paired with themselves are unchanged whatever the box
        torch.testing.assert_close(kept[moved], torch.full_like(kept[moved], lam))
        assert torch.equal(mixed[~moved], x[~moved])
    torch.manual_seed(0)
    mixed, _, y_b, lam = cutmix(x, y, prob=0.0)
    assert lam == 1.0 and torch.equal(mixed, x) and torch.equal(y_b, y)


def test_cutmix_box_sides_are_even_as_idc():
    # IDC misc/utils.py L170-186: the box spans centre -+ int(side * sqrt(1 - lam)) // 2
    x = torch.arange(4, dtype=torch.float32).reshape(4, 1, 1, 1).expand(4, 1, 31, 31)
    inner = 0
    for seed in range(40):
        torch.manual_seed(seed)
        mixed, y_a, y_b, lam = cutmix(x, torch.arange(4))
        moved = (mixed != x).any(dim=(0, 1))
        if lam < 1 and moved.any():
            rows, cols = moved.any(1).nonzero().flatten(), moved.any(0).nonzero().flatten()
            if rows.min() > 0 and cols.min() > 0 and rows.max() < 30 and cols.max() < 30:
                assert len(rows) % 2 == 0 and len(cols) % 2 == 0
                inner += 1
    assert inner > 0


def test_convnet_learns_an_easy_problem():
    train_x, train_y = toy_split(12, seed=0)
    test_x, test_y = toy_split(20, seed=1)
    record = evaluate_hard(train_x, train_y, test_x, test_y, epochs=12, seed=0, batch_size=12, width_factor=1.0)
    assert record["accuracy_last"] > 90.0
    assert record["train_images"] == 36 and record["epochs"] == 12 and record["resolution"] == 16
    assert (record["arch"], record["seed"], record["device"]) == ("convnet", 0, "cpu")
    assert (record["augment"], record["normalize"]) == ("idc", "imagenet")


def test_scores_follow_the_reference_cadence_and_report_last_and_best():
    train_x, train_y = toy_split(4, seed=0)
    test_x, test_y = toy_split(4, seed=1)
    record = evaluate_hard(train_x, train_y, test_x, test_y, epochs=9, seed=0, batch_size=6, width_factor=0.125,
                           evaluations=4)
    epochs, accuracies = zip(*record["curve"])
    assert list(epochs) == evaluation_epochs(9, 4) == [2, 4, 6, 8, 9]
    assert record["accuracy_last"] == accuracies[-1] and record["accuracy_best"] == max(accuracies)
    assert record["best_epoch"] == epochs[accuracies.index(max(accuracies))]
    assert "accuracy" not in record


def test_evaluation_epochs_are_those_of_idc():
    # IDC argument.py L443 (every epochs // 100) and train.py L130-142 (epoch % every == 0, from 1)
    for epochs, every in ((2000, 20), (1500, 15), (300, 3)):
        assert evaluation_epochs(epochs, 100) == list(range(every, epochs + 1, every))
        assert len(evaluation_epochs(epochs, 100)) == 100
    assert evaluation_epochs(60, 100) == list(range(1, 61))  # IDC divides by zero here; we score every epoch
    assert evaluation_epochs(350, 100) == list(range(3, 349, 3)) + [350]  # the last epoch is always scored
    assert evaluation_epochs(300, evaluations=1) == [300]


def test_resumed_validation_gives_the_same_curve_and_weights(tmp_path, monkeypatch):
    train_x, train_y = toy_split(3, seed=0)  # 9 images, batch 4: 3 steps per epoch
    test_x, test_y = toy_split(2, seed=1)
    settings = dict(epochs=6, seeds=[1], width_factor=0.125, batch_size=4, evaluations=3, test=(test_x, test_y))
    # stop in epoch 5, after the checkpoint of epoch 4
    assert_resumes_bit_for_bit(lambda ckpt: train_hard(train_x, train_y, checkpointer=ckpt, **settings)[0],
                               torch.optim.SGD, 13, tmp_path, monkeypatch)


def test_resize_for_validation_matches_pil_resize_and_centre_crop():
    g = torch.Generator().manual_seed(0)
    smooth = torch.nn.functional.interpolate(torch.rand(2, 3, 32, 40, generator=g), (256, 320), mode="bicubic")
    images = (smooth.clamp(0, 1) * 255).round().to(torch.uint8)
    out = resize_for_validation(images, 224)
    assert out.shape == (2, 3, 224, 224) and out.dtype == torch.uint8
    for image, got in zip(images, out):  # torchvision: Resize(224) on PIL (bilinear), CenterCrop(224)
        pil = Image.fromarray(image.permute(1, 2, 0).numpy()).resize((280, 224), Image.BILINEAR)
        want = torch.from_numpy(np.array(pil)).permute(2, 0, 1)[:, :, 28:252]
        assert (got.int() - want.int()).abs().max() <= 1
    square = images[..., :256]
    assert resize_for_validation(square, None) is square and resize_for_validation(square, 256) is square


def test_same_seed_gives_the_same_run():
    train_x, train_y = toy_split(4, seed=0)
    test_x, test_y = toy_split(4, seed=1)
    run = lambda seed: evaluate_hard(train_x, train_y, test_x, test_y, epochs=2, seed=seed, batch_size=5,
                                     width_factor=1.0)
    first, again, other = run(3), run(3), run(4)
    assert (first["curve"], first["final_loss"]) == (again["curve"], again["final_loss"])
    assert first["final_loss"] != other["final_loss"]


def test_evaluate_counts_top1_in_percent():
    class FirstPixelIsClass(torch.nn.Module):  # predicts the class written in pixel (0, 0)
        def forward(self, x):
            return torch.nn.functional.one_hot(((x[:, 0, 0, 0] + 1) * 127.5).round().long(), 4).float()

    x = torch.zeros(10, 1, 2, 2, dtype=torch.uint8)
    x[:, 0, 0, 0] = torch.tensor([0, 1, 2, 3, 0, 1, 2, 3, 0, 1])
    y = torch.tensor([0, 1, 2, 3, 0, 1, 2, 3, 3, 3])
    assert evaluate(FirstPixelIsClass(), x, y, "cpu", "half", "fp32", batch_size=3) == 80.0


@pytest.mark.parametrize("change,message", [
    (lambda x, y: (x[:0], y[:0]), "empty"),
    (lambda x, y: (x, y + 5), "outside"),
    (lambda x, y: (x.float(), y), "uint8"),
    (lambda x, y: (x, y[:-1]), "one label per image"),
])
def test_bad_training_inputs_are_refused(change, message):
    x, y = toy_split(2, seed=0)
    bad_x, bad_y = change(x, y)
    with pytest.raises(ValueError, match=message):
        evaluate_hard(bad_x, bad_y, x, y, epochs=1, seed=0)
    with pytest.raises(ValueError, match="epochs"):
        evaluate_hard(x, y, x, y, epochs=0, seed=0)
    for key in ("augment", "normalize"):
        with pytest.raises(ValueError, match=f"unknown {key} 'nope'"):
            evaluate_hard(x, y, x, y, epochs=1, seed=0, **{key: "nope"})


def evaluate_hard(train_x, train_y, test_x, test_y, *, epochs, seed, **protocol):
    """validate.train_and_evaluate for one seed, three classes, on the CPU."""
    (record,) = train_and_evaluate(hard_label(**protocol), "convnet", train_x, train_y, test_x, test_y,
                                   num_classes=3, seeds=[seed], epochs=epochs, device="cpu", mode="loop",
                                   channels_last=False, progress=False, checkpointer=None)
    return record


def test_validation_leaves_pytorchs_tf32_defaults(tmp_path, monkeypatch):
    # the reference's evaluator sets no TF32 flag (MD train.py); its DiT scripts set both
    from minimaxdd import data, io, stages

    x, y = toy_split(2, seed=0)
    for split in ("train", "test"):
        data.RealPack(x, y, ["a", "b", "c"], [0, 1, 2]).save(tmp_path / f"{split}.pt")
    asked = []
    monkeypatch.setattr(stages, "pick_device", lambda device, tf32: asked.append(tf32) or io.pick_device("cpu", tf32))
    settings = hard_label(width_factor=0.125).params()
    for precision in ("fp32", "tf32"):
        stages.validate(train=str(tmp_path / "train.pt"), test=str(tmp_path / "test.pt"),
                        record=str(tmp_path / f"{precision}.json"), method="random", ipc=2, arch="convnet", seed=0,
                        epochs=1, device="cpu", checkpoint_every_epochs=1, channels_last=False,
                        **settings | {"precision": precision})
    assert asked == [False, True]
    before = (torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32)
    try:
        io.pick_device("cuda", tf32=False)  # sets flags only: no CUDA device needed
        assert (torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32) == before
        io.pick_device("cuda", tf32=True)
        assert torch.backends.cuda.matmul.allow_tf32 and torch.backends.cudnn.allow_tf32
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = before


def test_a_validation_whose_accuracy_is_undefined_stops_its_job_naming_the_record(tmp_path, monkeypatch):
    """A run that scored nothing, or NaN (the data checks refuse the known causes: an empty test split,
    a single class): no record, so no cell."""
    from minimaxdd import data, stages, validate
    from minimaxdd.degenerate import DegenerateResult

    x, y = toy_split(2, seed=0)
    for split in ("train", "test"):
        data.RealPack(x, y, ["a", "b", "c"], [0, 1, 2]).save(tmp_path / f"{split}.pt")
    monkeypatch.setattr(validate, "train_and_evaluate",
                        lambda *args, **kwargs: [{"accuracy_last": math.nan, "accuracy_best": math.nan, "curve": []}])
    with pytest.raises(DegenerateResult, match=r"random\.json: undefined accuracy_last \(nan\), accuracy_best \(nan\)"):
        stages.validate(train=str(tmp_path / "train.pt"), test=str(tmp_path / "test.pt"),
                        record=str(tmp_path / "random.json"), method="random", ipc=2, arch="convnet", seed=0,
                        epochs=1, device="cpu", checkpoint_every_epochs=1, channels_last=False,
                        **hard_label(width_factor=0.125).params())
    assert not (tmp_path / "random.json").exists()

"""Validation networks, batch augmentation and the train-then-test loop of the IDC protocol."""

import pytest
import torch

from minimaxdd.augment import augment_batch, cutmix, random_flip, random_resized_crop
from minimaxdd.nets import ARCHS, arch_label, build_net, convnet_depth
from minimaxdd.validate import evaluate, train_and_evaluate


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


def test_resnetap_has_no_strided_layer():
    strided = [m for m in build_net("resnetap10", 3, 10, 256).modules()
               if isinstance(m, torch.nn.Conv2d) and m.stride != (1, 1)]
    assert strided == []


def test_augmentations_keep_shape():
    torch.manual_seed(0)
    x = torch.rand(5, 3, 16, 24)
    assert augment_batch(x).shape == x.shape
    assert random_resized_crop(x).shape == x.shape


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


def toy_split(per_class, seed):
    """Three classes of 16x16 gray images: horizontal stripes, vertical stripes, checkerboard.

    Period-4 patterns survive flips and the 0.5-1 area crops; noise makes every image differ.
    """
    g = torch.Generator().manual_seed(seed)
    rows = (torch.arange(16) // 2 % 2).float()
    patterns = torch.stack([rows[:, None].expand(16, 16), rows[None, :].expand(16, 16),
                            (rows[:, None] + rows[None, :]) % 2])
    y = torch.arange(3).repeat_interleave(per_class)
    x = 0.2 + 0.6 * patterns[y] + 0.1 * torch.randn(len(y), 16, 16, generator=g)
    return (x.clamp(0, 1) * 255).round().to(torch.uint8).unsqueeze(1), y


def test_convnet_learns_an_easy_problem():
    train_x, train_y = toy_split(12, seed=0)
    test_x, test_y = toy_split(20, seed=1)
    record = train_and_evaluate(train_x, train_y, test_x, test_y, arch="convnet", num_classes=3,
                                epochs=12, seed=0, batch_size=12, progress=False)
    assert record["accuracy"] > 90.0
    assert record["train_images"] == 36 and record["epochs"] == 12
    assert (record["arch"], record["seed"], record["device"]) == ("convnet", 0, "cpu")


def test_same_seed_gives_the_same_run():
    train_x, train_y = toy_split(4, seed=0)
    test_x, test_y = toy_split(4, seed=1)
    run = lambda seed: train_and_evaluate(train_x, train_y, test_x, test_y, arch="convnet",
                                          num_classes=3, epochs=2, seed=seed, batch_size=5,
                                          progress=False)
    first, again, other = run(3), run(3), run(4)
    assert (first["accuracy"], first["final_loss"]) == (again["accuracy"], again["final_loss"])
    assert first["final_loss"] != other["final_loss"]


def test_evaluate_counts_top1_in_percent():
    class FirstPixelIsClass(torch.nn.Module):  # predicts the class written in pixel (0, 0)
        def forward(self, x):
            return torch.nn.functional.one_hot(((x[:, 0, 0, 0] + 1) * 127.5).round().long(), 4).float()

    x = torch.zeros(10, 1, 2, 2, dtype=torch.uint8)
    x[:, 0, 0, 0] = torch.tensor([0, 1, 2, 3, 0, 1, 2, 3, 0, 1])
    y = torch.tensor([0, 1, 2, 3, 0, 1, 2, 3, 3, 3])
    assert evaluate(FirstPixelIsClass(), x, y, "cpu", batch_size=3) == 80.0


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
        train_and_evaluate(bad_x, bad_y, x, y, arch="convnet", num_classes=3, epochs=1, seed=0,
                           progress=False)
    with pytest.raises(ValueError, match="epochs"):
        train_and_evaluate(x, y, x, y, arch="convnet", num_classes=3, epochs=0, seed=0,
                           progress=False)

"""The pixel pipeline of the IDC protocol: normalization, color jitter, lighting, their batching."""

import pytest
import torch

from minimaxdd.augment import (EIGVAL, EIGVEC, LIGHTING_STD, NORMALIZATIONS, augment_batch, color_jitter,
                               lighting, normalize, random_flip, random_resized_crop)

GRAY = torch.tensor([0.299, 0.587, 0.114])  # IDC misc/utils.py L234


def test_constants_are_those_of_idc():
    # snu-mllab/Efficient-Dataset-Condensation data.py L15-16 (MEANS / STDS 'imagenet')
    assert NORMALIZATIONS["imagenet"] == ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))
    assert NORMALIZATIONS["half"] == ((0.5, 0.5, 0.5), (0.5, 0.5, 0.5))
    # data.py L292-298: Lighting(alphastd=0.1, eigval=..., eigvec=...)
    assert LIGHTING_STD == 0.1
    assert EIGVAL == (0.2175, 0.0188, 0.0045)
    assert EIGVEC == ((-0.5675, 0.7192, 0.4009),
                      (-0.5808, -0.0045, -0.8140),
                      (-0.5836, -0.6948, 0.4203))


def test_normalize_per_channel_and_gray_uses_the_mean_statistics():
    x = torch.rand(2, 3, 4, 4)
    mean, std = torch.tensor(NORMALIZATIONS["imagenet"])[:, :, None, None]
    torch.testing.assert_close(normalize(x), (x - mean) / std)
    torch.testing.assert_close(normalize(x, "half"), x * 2 - 1)
    torch.testing.assert_close(normalize(x[:, :1]), (x[:, :1] - 0.449) / 0.226)
    with pytest.raises(ValueError, match="valid names"):
        normalize(x, "nope")


def test_collapsed_ranges_are_the_identity():
    torch.manual_seed(0)
    x = torch.rand(6, 3, 8, 8)
    assert torch.equal(color_jitter(x, 0, 0, 0), x)
    assert torch.equal(lighting(x, std=0), x)


def blend_factors(x, out, target):
    """Per image, the a of out = x + a (target - x) by least squares, and the largest residual."""
    d = (target - x).expand_as(x).flatten(1)
    a = ((out - x).flatten(1) * d).sum(1) / (d * d).sum(1)
    return a, ((out - x).flatten(1) - a[:, None] * d).abs().max()


@pytest.mark.parametrize("op", ["brightness", "contrast", "saturation"])
def test_each_jitter_is_a_per_image_blend_as_idc(op):
    # IDC misc/utils.py L240-268: img.lerp(target, a), a ~ U(-0.4, 0.4); targets black, the mean of
    # the luma, the luma; no clamping.
    torch.manual_seed(0)
    x = torch.rand(256, 3, 6, 6)
    out = color_jitter(x, **{k: 0.4 if k == op else 0.0 for k in ("brightness", "contrast", "saturation")})
    luma = (x * GRAY[:, None, None]).sum(1, keepdim=True)
    target = {"brightness": torch.zeros_like(x), "contrast": luma.mean(dim=(1, 2, 3), keepdim=True),
              "saturation": luma}[op]
    a, residual = blend_factors(x, out, target)
    assert residual < 1e-5
    assert a.abs().max() <= 0.4 and a.min() < -0.35 and a.max() > 0.35
    assert out.amin() < 0 or out.amax() > 1  # not clamped


def blends(x, a):
    """IDC's three blends of one C x H x W image for fixed factors (misc/utils.py L231-268)."""
    luma = lambda img: (img * GRAY[:, None, None]).sum(0, keepdim=True)
    return {"brightness": lambda img: img.lerp(torch.zeros_like(img), a[0]),
            "contrast": lambda img: img.lerp(luma(img).mean().expand_as(img), a[1]),
            "saturation": lambda img: img.lerp(luma(img).expand_as(img), a[2])}


def test_jitter_order_does_not_matter_and_the_full_jitter_composes_the_blends():
    # IDC shuffles the three blends per image (misc/utils.py L286): every order gives one image.
    x = torch.rand(3, 5, 5)
    ops = blends(x, torch.tensor([0.3, -0.25, 0.35]))
    results = []
    for order in ([0, 1, 2], [0, 2, 1], [1, 0, 2], [1, 2, 0], [2, 0, 1], [2, 1, 0]):
        y = x
        for i in order:
            y = list(ops.values())[i](y)
        results.append(y)
    assert all(torch.allclose(r, results[0], atol=1e-6) for r in results)
    # The jitter is then p x + q luma + r mean(luma) with 1 - a_b = p + q + r,
    # 1 - a_c = (p + q) / (p + q + r) and a_s = q / (p + q).
    torch.manual_seed(0)
    x = torch.rand(32, 3, 6, 6)
    out = color_jitter(x)
    for image, result in zip(x, out):
        luma = (image * GRAY[:, None, None]).sum(0, keepdim=True).expand_as(image)
        design = torch.stack([image.flatten(), luma.flatten(), luma.mean().expand(image.numel())], 1)
        p, q, r = torch.linalg.lstsq(design, result.flatten()[:, None]).solution.flatten()
        a = torch.stack([1 - (p + q + r), 1 - (p + q) / (p + q + r), q / (p + q)])
        assert a.abs().max() <= 0.4 + 1e-4
        y = image
        for op in blends(image, a).values():
            y = op(y)
        torch.testing.assert_close(y, result, atol=1e-5, rtol=0)


def test_lighting_adds_a_pca_shift_per_image():
    torch.manual_seed(0)
    x = torch.rand(4000, 3, 2, 2)
    shift = lighting(x) - x
    assert torch.allclose(shift, shift[..., :1, :1].expand_as(shift), atol=1e-6)  # constant per image
    alpha = torch.linalg.solve(torch.tensor(EIGVEC), shift[:, :, 0, 0].T).T / torch.tensor(EIGVAL)
    assert torch.allclose(alpha.mean(0), torch.zeros(3), atol=0.01)
    assert torch.allclose(alpha.std(0), torch.full((3,), LIGHTING_STD), rtol=0.05)
    gray = torch.rand(3, 1, 2, 2)
    assert lighting(gray).shape == gray.shape


def test_augmentation_is_reproducible_and_crop_flip_is_its_first_half():
    x = torch.rand(8, 3, 16, 16)
    runs = []
    for seed in (1, 1, 2):
        torch.manual_seed(seed)
        runs.append(augment_batch(x))
    assert torch.equal(runs[0], runs[1]) and not torch.equal(runs[0], runs[2])
    torch.manual_seed(1)
    crop_flip = augment_batch(x, "crop_flip")
    torch.manual_seed(1)
    assert torch.equal(crop_flip, random_flip(random_resized_crop(x)))
    assert augment_batch(x[:, :1]).shape == (8, 1, 16, 16)
    with pytest.raises(ValueError, match="valid names"):
        augment_batch(x, "nope")

"""One rule for what a job writes (minimaxdd.degenerate): a result that carries no information stops
its job, named with what made it. The stages' use of it: test_scatter (generate), test_resume
(fine-tuning), test_validate (validation)."""

import math

import pytest
import torch

from minimaxdd.degenerate import DegenerateResult, refuse_flat_images, refuse_non_finite, refuse_undefined


def test_an_image_of_one_value_is_refused_naming_its_class_and_index():
    images = torch.randint(0, 256, (6, 3, 4, 4), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    labels = torch.tensor([0, 0, 0, 1, 1, 1])
    refuse_flat_images(images, labels, ["cat", "dog"], "the set")  # every image varies
    images[4], images[5] = 0, 255  # all black, all white
    with pytest.raises(DegenerateResult, match=r"^the set: 2 of 6 generated images are of one value "
                                               r"\(first: image 1 of class dog, all 0\); lower the guidance's scales"):
        refuse_flat_images(images, labels, ["cat", "dog"], "the set")


def test_a_non_finite_weight_is_refused_naming_the_tensor():
    weights = {"a": torch.zeros(3), "steps": torch.tensor([4]), "b": torch.tensor([1.0, math.inf])}
    refuse_non_finite({"a": weights["a"], "steps": weights["steps"]}, "the model")
    with pytest.raises(DegenerateResult, match=r"^the model: non-finite weights in b; lower finetune.lr"):
        refuse_non_finite(weights, "the model")
    with pytest.raises(DegenerateResult, match=r"in a, b, c and 1 more"):
        refuse_non_finite({k: torch.tensor([math.nan]) for k in "abcd"}, "the model")


def test_an_undefined_score_is_refused():
    refuse_undefined({"accuracy_last": 0.0, "accuracy_best": 100.0}, "the record")
    with pytest.raises(DegenerateResult, match=r"^the record: undefined accuracy_best \(nan\)"):
        refuse_undefined({"accuracy_last": 50.0, "accuracy_best": math.nan}, "the record")

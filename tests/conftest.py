"""Helpers shared by the test files: toy data and the validation protocols at the schema's defaults."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from minimaxdd import plan
from minimaxdd.settings import HardLabel, SoftLabel, hard_label_rule


def schema_defaults(section: str) -> dict:
    """A config section as the schema's defaults fill it in."""
    return plan.load_config({"experiment": "defaults"})[section]


def hard_label(num_classes: int = 3, **overrides) -> HardLabel:
    """The hard-label protocol at the schema's defaults (the reference's rule for `num_classes`)."""
    section = schema_defaults("validate")
    rule = {k: v for k, v in hard_label_rule(num_classes).items() if section[k] is None}
    return dataclasses.replace(HardLabel.from_config(section, **rule), **overrides)


def soft_label(**overrides) -> SoftLabel:
    return dataclasses.replace(SoftLabel.from_config(schema_defaults("soft_label")), **overrides)


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


def train_hard(train_x, train_y, *, seeds=(0,), arch="convnet", epochs=3, test=None, mode="loop",
               checkpointer=None, channels_last=False, num_classes=3, **protocol):
    """classifier.train_classifiers under the hard-label protocol (defaults but for `protocol`) on
    the CPU: [(model, record)] per seed."""
    from minimaxdd.classifier import train_classifiers
    from minimaxdd.validate import HardLabelSteps

    test_x, test_y = test if test is not None else (None, None)
    return train_classifiers(HardLabelSteps(arch, hard_label(**protocol)), train_x, train_y, seeds=list(seeds),
                             num_classes=num_classes, epochs=epochs, device="cpu", mode=mode, channels_last=channels_last,
                             test_x=test_x, test_y=test_y, progress=False, checkpointer=checkpointer)


def assert_resumes_bit_for_bit(train, optimizer, stop_after: int, tmp_path, monkeypatch) -> None:
    """`train(checkpointer)` -> (model, record), killed after `stop_after` optimizer steps, then
    resumed from its checkpoint (every 2 epochs): the same curve, scores and weights as one run."""
    from minimaxdd.resume import Checkpointer

    expected_model, expected = train(None)
    checkpointer = Checkpointer(tmp_path / "resume.pt", every=2, fingerprint="job")
    real_step, count = optimizer.step, {"n": 0}

    def step(self, *args, **kwargs):
        count["n"] += 1
        if count["n"] > stop_after:
            raise KeyboardInterrupt
        return real_step(self, *args, **kwargs)

    with monkeypatch.context() as patch:
        patch.setattr(optimizer, "step", step)
        with pytest.raises(KeyboardInterrupt):
            train(checkpointer)
    assert torch.load(tmp_path / "resume.pt", weights_only=False)["curves"][0] == expected["curve"][:2]
    model, resumed = train(checkpointer)
    for key in ("curve", "accuracy_last", "accuracy_best", "best_epoch", "final_loss"):
        assert resumed[key] == expected[key]
    assert all(torch.equal(v, expected_model.state_dict()[k]) for k, v in model.state_dict().items())

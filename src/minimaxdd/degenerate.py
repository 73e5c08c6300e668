"""One rule for what a job writes: a result that carries no information is an error, not a row.

A generated image of one value (all black, say: the decoder's answer to latents a guidance scale
threw far off), a fine-tuned model with a non-finite weight, or a validation whose accuracy is
undefined stops its job, named with what made it (the method and its settings), before anything
is written. Real images are data, not results: a selection of them is not checked.
"""

from __future__ import annotations

import math

import torch


class DegenerateResult(ValueError):
    """A job's result carries no information; the message names what made it."""


def refuse_flat_images(images: torch.Tensor, labels: torch.Tensor, class_names: list[str], made_by: str) -> None:
    """Stop if any image (N, C, H, W) is of one value."""
    flat = images.flatten(1)
    one_value = (flat.amin(1) == flat.amax(1)).nonzero().flatten().tolist()
    if one_value:
        first = one_value[0]
        index = int((labels[:first] == labels[first]).sum())  # the image's index within its class
        raise DegenerateResult(
            f"{made_by}: {len(one_value)} of {len(images)} generated images are of one value (first: image "
            f"{index} of class {class_names[int(labels[first])]}, all {int(flat[first, 0])}); lower the "
            "guidance's scales (the method's guidance section) or generate.guidance_scale")


def refuse_non_finite(tensors: dict[str, torch.Tensor], made_by: str) -> None:
    """Stop if any tensor holds a NaN or an infinity."""
    bad = [name for name, tensor in tensors.items() if tensor.is_floating_point() and not torch.isfinite(tensor).all()]
    if bad:
        raise DegenerateResult(f"{made_by}: non-finite weights in {', '.join(bad[:3])}"
                               f"{f' and {len(bad) - 3} more' if len(bad) > 3 else ''}; lower finetune.lr")


def refuse_undefined(values: dict[str, float], made_by: str) -> None:
    """Stop if any score is NaN or infinite."""
    bad = {name: value for name, value in values.items() if not math.isfinite(value)}
    if bad:
        raise DegenerateResult(f"{made_by}: undefined {', '.join(f'{k} ({v})' for k, v in bad.items())}")

"""The feature network of the analyses: a ResNetAP-10 trained on the full training split.

As in the paper's MMD protocol (Sec. 4.3), its pooled last-stage features embed real and
surrogate images for MMD, t-SNE, precision / recall / density / coverage and the coreset baselines.
"""

from __future__ import annotations

import torch

from .classifier import evaluate, to_model_input, train_classifiers
from .io import load_torch, save_torch
from .nets import build_net
from .settings import Recipe
from .validate import RecipeSteps

FEATURE_ARCH = "resnetap10"


def train_feature_net(recipe: Recipe, images: torch.Tensor, labels: torch.Tensor, test_images: torch.Tensor,
                      test_labels: torch.Tensor, path: str, *, num_classes: int, epochs: int, seed: int,
                      device: torch.device) -> tuple[torch.nn.Module, dict]:
    """Train on the full training split at its own resolution with the hard-label recipe, save
    weights and build facts; returns the model and facts."""
    ((model, record),) = train_classifiers(RecipeSteps(FEATURE_ARCH, recipe), images, labels, seeds=[seed],
                                           num_classes=num_classes, epochs=epochs, device=device, mode="loop",
                                           channels_last=False, test_x=None, test_y=None, progress=True,
                                           checkpointer=None)
    record |= {"test_accuracy": evaluate(model, test_images, test_labels, device, recipe.normalize,
                                         recipe.precision),
               "num_classes": num_classes, "channels": images.shape[1], "resolution": images.shape[-1]}
    save_torch({"state_dict": model.state_dict(), "record": record}, path)
    model.normalize = recipe.normalize  # embed_images normalises its inputs as in training
    return model, record


def load_feature_net(path: str, device: torch.device) -> torch.nn.Module:
    saved = load_torch(path)
    record = saved["record"]
    model = build_net(FEATURE_ARCH, record["channels"], record["num_classes"], record["resolution"],
                      record["width_factor"])
    model.load_state_dict(saved["state_dict"])
    model.normalize = record["normalize"]  # its inputs are normalised as in its training
    return model.to(device).eval()


@torch.no_grad()
def embed_images(model: torch.nn.Module, images: torch.Tensor, device: torch.device, batch_size: int = 256):
    """uint8 images -> (N, D) float features on the CPU, normalised as the network was trained."""
    return torch.cat([model.embed(to_model_input(batch, device, model.normalize)).float().cpu()
                      for batch in images.split(batch_size)])

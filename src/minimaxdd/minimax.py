"""The minimax criteria of the paper (Sec. 2.3, Eq. 3-5) and their per-class FIFO memories.

For each class c in a batch, with P the batch's predicted clean latents of class c, R the real
latents and Q the earlier predictions held in c's memories:

    representativeness_c = 1 - min_{p in P, r in R} cos(p, r)   (pull toward the least similar real)
    diversity_c          =     max_{p in P, q in Q} cos(p, q)   (push from the most similar prediction)

As in the authors' code, the min / max runs over all (prediction, memory entry) pairs of a class,
the per-class terms are averaged over the classes present in the batch, a class whose memories are
still empty contributes nothing, and the memories are updated after the loss with the current real
latents and the detached predictions.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


class ClassMemory:
    """Per-class FIFO queue of flattened vectors, at most `size` per class."""

    def __init__(self, size: int):
        if size < 1:
            raise ValueError(f"memory size must be at least 1, got {size}")
        self.size = size
        self._items: dict[int, torch.Tensor] = {}

    def push(self, label: int, vectors: torch.Tensor) -> None:
        vectors = vectors.detach().flatten(1)
        held = self._items.get(label)
        merged = vectors if held is None else torch.cat([held, vectors])
        self._items[label] = merged[-self.size :]  # drop the oldest first

    def get(self, label: int) -> torch.Tensor | None:
        return self._items.get(label)

    def __len__(self) -> int:
        return sum(len(v) for v in self._items.values())


def cosine_matrix(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Pairwise cosine similarity of the rows of a (n, d) and b (m, d)."""
    return F.normalize(a, dim=1) @ F.normalize(b, dim=1).T


def minimax_terms(
    pred_x0: torch.Tensor,
    real_x0: torch.Tensor,
    labels: torch.Tensor,
    real_memory: ClassMemory,
    pred_memory: ClassMemory,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Unweighted (representativeness, diversity) terms of one batch; then updates both memories."""
    representativeness = pred_x0.new_zeros(())
    diversity = pred_x0.new_zeros(())
    classes = labels.unique().tolist()
    for c in classes:
        in_class = labels == c
        preds = pred_x0[in_class].flatten(1)
        reals, earlier = real_memory.get(c), pred_memory.get(c)
        if reals is not None:
            representativeness = representativeness + 1 - cosine_matrix(preds, reals).min()
        if earlier is not None:
            diversity = diversity + cosine_matrix(preds, earlier).max()
    for c in classes:
        in_class = labels == c
        real_memory.push(c, real_x0[in_class])
        pred_memory.push(c, pred_x0[in_class])
    return representativeness / len(classes), diversity / len(classes)

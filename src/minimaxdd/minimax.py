"""The minimax criteria of the paper (Sec. 2.3, Eq. 3-5) and their per-class FIFO memories.

For each class c in a batch, with P the batch's predicted clean latents of class c, R the real
latents and Q the earlier predictions held in c's memories:

    representativeness_c = 1 - min_{p in P, r in R} cos(p, r)   (pull toward the least similar real)
    diversity_c          =     max_{p in P, q in Q} cos(p, q)   (push from the most similar prediction)

The plain forms of the ablation (Table 5) match means instead (Eq. 2 and its diversity analogue):

    representativeness_c = 1 - mean_{p in P} cos(p, mean(R))     diversity_c = mean_{p in P} cos(p, mean(Q))

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

    def state_dict(self) -> dict[int, torch.Tensor]:
        return dict(self._items)

    def load_state_dict(self, items: dict[int, torch.Tensor]) -> None:
        self._items = dict(items)


def cosine_matrix(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Pairwise cosine similarity of the rows of a (n, d) and b (m, d)."""
    return F.normalize(a, dim=1) @ F.normalize(b, dim=1).T


FORMS = ("off", "minimax", "mean")


def representativeness_term(preds: torch.Tensor, reals: torch.Tensor, form: str) -> torch.Tensor:
    if form == "minimax":  # Eq. 3: pull toward the least similar real entry
        return 1 - cosine_matrix(preds, reals).min()
    return 1 - F.cosine_similarity(preds, reals.mean(0, keepdim=True)).mean()  # Eq. 2


def diversity_term(preds: torch.Tensor, earlier: torch.Tensor, form: str) -> torch.Tensor:
    if form == "minimax":  # Eq. 4: push away from the most similar earlier prediction
        return cosine_matrix(preds, earlier).max()
    return F.cosine_similarity(preds, earlier.mean(0, keepdim=True)).mean()


def minimax_terms(
    pred_x0: torch.Tensor,
    real_x0: torch.Tensor,
    labels: torch.Tensor,
    real_memory: ClassMemory,
    pred_memory: ClassMemory,
    representativeness: str = "minimax",
    diversity: str = "minimax",
    update: bool = True,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Unweighted (representativeness, diversity) terms of one batch; then updates both memories
    (unless `update` is False: data-parallel training updates them with the whole global batch).

    `representativeness` and `diversity` pick each term's form: "minimax", "mean" or "off".
    """
    for form in (representativeness, diversity):
        if form not in FORMS:
            raise ValueError(f"criterion form must be one of {FORMS}, got {form!r}")
    rep_total = pred_x0.new_zeros(())
    div_total = pred_x0.new_zeros(())
    classes = labels.unique().tolist()
    for c in classes:
        preds = pred_x0[labels == c].flatten(1)
        reals, earlier = real_memory.get(c), pred_memory.get(c)
        if reals is not None and representativeness != "off":
            rep_total = rep_total + representativeness_term(preds, reals, representativeness)
        if earlier is not None and diversity != "off":
            div_total = div_total + diversity_term(preds, earlier, diversity)
    if update:
        update_memories(real_memory, pred_memory, real_x0, pred_x0, labels)
    return rep_total / len(classes), div_total / len(classes)


def update_memories(real_memory: ClassMemory, pred_memory: ClassMemory, real_x0: torch.Tensor,
                    pred_x0: torch.Tensor, labels: torch.Tensor) -> None:
    for c in labels.unique().tolist():
        in_class = labels == c
        real_memory.push(c, real_x0[in_class])
        pred_memory.push(c, pred_x0[in_class])

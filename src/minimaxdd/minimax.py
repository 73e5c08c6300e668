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
    """Per-class FIFO queues of flattened vectors, at most `size` per class.

    Held as one (classes + 1, size, dim) tensor on the device of the vectors, written as a ring per
    class, so that a batch of any classes is pushed and compared with a few kernels: no loop over
    the classes, and no host synchronisation when `classes` is given (else the classes grow as
    labels appear, reading the largest label on the host). The extra row is a sink for the rows of
    a batch that holds more than `size` vectors of one class (only its last `size` are kept)."""

    def __init__(self, size: int, classes: int | None = None):
        if size < 1:
            raise ValueError(f"memory size must be at least 1, got {size}")
        self.size, self.classes = size, classes
        self.entries: torch.Tensor | None = None  # (classes + 1, size, dim)
        self.count: torch.Tensor | None = None  # (classes,) entries held
        self.next: torch.Tensor | None = None  # (classes,) ring position of the next write

    @property
    def num_classes(self) -> int:
        return 0 if self.count is None else len(self.count)

    def _grow(self, labels: torch.Tensor, dim: int, like: torch.Tensor) -> None:
        if self.classes is not None and self.entries is not None:
            return
        classes = self.classes if self.classes is not None else int(labels.max()) + 1
        held = self.num_classes
        if classes <= held:
            return
        entries = like.new_zeros(classes + 1, self.size, dim)
        count, next_slot = (torch.zeros(classes, dtype=torch.long, device=like.device) for _ in range(2))
        if held:
            entries[:held], count[:held], next_slot[:held] = self.entries[:held], self.count, self.next
        self.entries, self.count, self.next = entries, count, next_slot

    def push_batch(self, labels: torch.Tensor, vectors: torch.Tensor) -> None:
        """Append each row of `vectors` to the queue of its label, in order; the oldest go first."""
        vectors = vectors.detach().flatten(1)
        if len(vectors) == 0:
            return
        self._grow(labels, vectors.shape[1], vectors)
        onehot = F.one_hot(labels, self.num_classes)
        rank = (onehot.cumsum(0) * onehot).sum(1) - 1  # position of each row within its class
        per_class = onehot.sum(0)
        kept = rank >= per_class[labels] - self.size  # more than `size` of a class: its last ones
        rows = torch.where(kept, labels, self.num_classes)  # the others go to the sink row
        self.entries[rows, (self.next[labels] + rank) % self.size] = vectors.to(self.entries.dtype)
        self.next = (self.next + per_class) % self.size
        self.count = (self.count + per_class).clamp(max=self.size)

    def push(self, label: int, vectors: torch.Tensor) -> None:
        self.push_batch(torch.full((len(vectors),), label, dtype=torch.long, device=vectors.device), vectors)

    def get(self, label: int) -> torch.Tensor | None:
        """The entries of `label`, oldest first (None when it has none)."""
        if self.entries is None or label >= self.num_classes or self.count[label] == 0:
            return None
        count, order = int(self.count[label]), torch.arange(self.size, device=self.entries.device)
        oldest = (int(self.next[label]) - count) % self.size
        return self.entries[label, (oldest + order[:count]) % self.size]

    def __len__(self) -> int:
        return 0 if self.count is None else int(self.count.sum())

    def state_dict(self) -> dict:
        return {"entries": self.entries, "count": self.count, "next": self.next}

    def load_state_dict(self, state: dict) -> None:
        self.entries, self.count, self.next = state["entries"], state["count"], state["next"]


def cosine_matrix(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Pairwise cosine similarity of the rows of a (n, d) and b (m, d)."""
    return F.normalize(a, dim=1) @ F.normalize(b, dim=1).T


FORMS = ("off", "minimax", "mean")


def _per_sample_similarity(preds: torch.Tensor, labels: torch.Tensor, memory: ClassMemory, form: str,
                           pick: str) -> torch.Tensor:
    """Each prediction against the memory of its own class: (B,) the min / max cosine over the
    entries ("minimax"), or the cosine with the entries' mean ("mean")."""
    entries = memory.entries[labels]  # (B, size, dim)
    held = torch.arange(memory.size, device=preds.device) < memory.count[labels, None]  # (B, size)
    if form == "mean":
        mean = (entries * held[..., None]).sum(1) / memory.count[labels, None].clamp(min=1)
        return F.cosine_similarity(preds, mean)
    cos = torch.einsum("bd,bkd->bk", F.normalize(preds, dim=1), F.normalize(entries, dim=2))
    empty = torch.tensor(float("inf") if pick == "min" else float("-inf"), device=preds.device)
    cos = torch.where(held, cos, empty)
    return cos.amin(1) if pick == "min" else cos.amax(1)


def _per_class(values: torch.Tensor, onehot: torch.Tensor, form: str, pick: str) -> torch.Tensor:
    """(classes,) each class's min / max over its samples' values ("minimax"), or their mean."""
    if form == "mean":
        return (onehot * values[:, None]).sum(0) / onehot.sum(0).clamp(min=1)
    fill = float("inf") if pick == "min" else float("-inf")
    spread = torch.where(onehot, values[:, None], torch.full_like(values[:, None], fill))
    return spread.amin(0) if pick == "min" else spread.amax(0)


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
    All classes of the batch are computed at once: each prediction against the memory of its class,
    then each class's min (max, mean) over its predictions.
    """
    for form in (representativeness, diversity):
        if form not in FORMS:
            raise ValueError(f"criterion form must be one of {FORMS}, got {form!r}")
    preds = pred_x0.flatten(1)
    ordered = labels.sort().values
    classes_in_batch = 1 + (ordered[1:] != ordered[:-1]).sum()  # those with empty memories count too
    terms = []
    for memory, form, pick in ((real_memory, representativeness, "min"), (pred_memory, diversity, "max")):
        if form == "off" or memory.entries is None:
            terms.append(preds.new_zeros(()))
            continue
        classes = memory.num_classes
        in_memory = labels < classes  # a label never pushed yet has no memory
        onehot = F.one_hot(labels.clamp(max=classes - 1), classes).bool() & in_memory[:, None]
        values = _per_sample_similarity(preds, labels.clamp(max=classes - 1), memory, form, pick)
        per_class = _per_class(values, onehot, form, pick)
        if pick == "min":
            per_class = 1 - per_class
        counted = onehot.any(0) & memory.count.gt(0)  # a class whose memory is empty adds nothing
        terms.append(torch.where(counted, per_class, torch.zeros_like(per_class)).sum() / classes_in_batch)
    if update:
        update_memories(real_memory, pred_memory, real_x0, pred_x0, labels)
    return terms[0], terms[1]


def update_memories(real_memory: ClassMemory, pred_memory: ClassMemory, real_x0: torch.Tensor,
                    pred_x0: torch.Tensor, labels: torch.Tensor) -> None:
    real_memory.push_batch(labels, real_x0)
    pred_memory.push_batch(labels, pred_x0)

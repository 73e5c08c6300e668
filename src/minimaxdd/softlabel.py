"""Soft-label validation of a surrogate set (RDED protocol), as the paper evaluates ImageNet-1K.

The paper's code defers to RDED for ImageNet-1K ("with a better validation protocol provided in
RDED", vimar-gu/MinimaxDiffusion README.md:81). RDED (LINs-lab/RDED @ 3f6453d, files cited as
path:line) trains a student from scratch on the surrogate images while a frozen pretrained teacher
labels every augmented batch; the surrogate set's own labels are never used:

- per image: ToTensor -> ShufflePatches(factor) -> RandomResizedCrop(size, scale=(1/factor, 1))
  -> horizontal flip -> ImageNet Normalize (validation/main.py:115-126), factor 2 (argument.py:54-58;
  its --min-scale-crops 0.08, argument.py:108-110, is not used by the validation);
- per batch: CutMix with lam ~ Beta(1, 1) on every batch (argument.py:67-73, 130-135;
  validation/utils.py:119-161), the teacher (eval mode, no grad) on the same mixed batch gives
  softmax(teacher / T), the student log_softmax(student / T), KLDivLoss(reduction="batchmean"),
  not multiplied by T^2, T = 20 with CutMix (validation/main.py:202-226, argument.py:270-274);
- AdamW lr 1e-3 (resnet18 and ConvNets), betas (0.9, 0.999), weight decay 0.01 on conv and linear
  weights only (validation/main.py:86-92, argument.py:150-154, 276-290, validation/utils.py:67-84);
- LambdaLR 0.5 * (1 + cos(pi * epoch / epochs / 2)), stepped per epoch (validation/main.py:95-102,
  187): the /2 means the rate only decays to half of its start by the last epoch;
- 300 epochs (argument.py:114); the test split is scored after every 10th epoch and the last one,
  but only once the 0-based epoch exceeds 0.8 * epochs; the best score is reported
  (validation/main.py:176-192; strictly better replaces);
- test images: Resize(size // 7 * 8) + CenterCrop(size) (validation/main.py:146-166).

Teacher classes: the student predicts the dataset's classes 0..K-1. A teacher trained on the
dataset's classes (RDED's subset teachers, synthesize/utils.py:228-240) outputs exactly those;
a teacher in a larger label space (a torchvision ImageNet-1K ResNet-18) is read at `class_ids`,
dataset class i being its output class_ids[i], as RDED prunes its classifier rows to `classes`
(synthesize/utils.py:210-226): the soft targets are softmax(teacher_logits[:, class_ids] / T).
"""

from __future__ import annotations

import argparse
import math
from pathlib import Path

import torch
from torch import nn
from torch.nn import functional as F

from .augment import cutmix, random_flip, random_resized_crop
from .augment import normalize as normalize_images
from .classifier import RunRandom, check_split, to_unit, train_classifiers
from .io import autocast
from .nets import ARCHS, BN_ARCHS, ResNet18BN, build_bn_net, build_net
from .resume import Checkpointer
from .settings import SoftLabel
from .shards import Images
from .validate import evaluation_epochs, resize_for_validation

# RDED's constants, not settings
FACTOR = 2  # ShufflePatches grid and 1 / min crop scale (argument.py:54-58)
BETAS = (0.9, 0.999)  # AdamW (argument.py:150-154)
CUTMIX_BETA = 1.0  # argument.py:130-135
NORMALIZE = "imagenet"  # validation/main.py:125
EVAL_EVERY, EVAL_AFTER = 10, 0.8  # validation/main.py:179-180
# RDED's CutMix mixes the batch in place (validation/utils.py:143-144), so its extra no-grad
# student forward for the train accuracy (validation/main.py:213) sees the same mixed batch in
# train mode and moves the BN running statistics twice per step: momentum 1 - 0.9^2 instead of
# torch's 0.1 does the same without the extra forward.
BN_MOMENTUM = 1 - (1 - 0.1) ** 2


def soft_label_loss(student_logits: torch.Tensor, teacher_logits: torch.Tensor, temperature: float) -> torch.Tensor:
    """KL(softmax(teacher / T) || softmax(student / T)), summed over classes and averaged over the
    batch: torch's KLDivLoss(reduction="batchmean") as RDED (validation/main.py:202, 216, 225-226),
    without RDED multiplying by T^2 (it does not)."""
    log_q = F.log_softmax(student_logits.float() / temperature, dim=1)
    p = F.softmax(teacher_logits.float() / temperature, dim=1)
    return F.kl_div(log_q, p, reduction="batchmean")


def shuffle_patches(x: torch.Tensor, factor: int, generator: torch.Generator | None = None) -> torch.Tensor:
    """RDED's ShufflePatches (validation/utils.py:164-188), batched: cut each image into `factor`
    vertical strips and put them in a random order, then the same with horizontal strips (an
    independent random order per image and axis). RDED drops the w - factor * (w // factor)
    remainder columns (rows); here they stay in place, so the size is kept (no remainder at the
    sizes RDED runs)."""
    if factor <= 1:
        return x
    n = x.shape[0]
    for dim in (3, 2):  # columns first, then rows, as RDED
        size = x.shape[dim]
        strip = size // factor
        if strip == 0:  # fewer pixels than strips: nothing to shuffle
            continue
        order = torch.rand(n, factor, device=x.device, generator=generator).argsort(1)  # a permutation per image
        pos = torch.arange(size, device=x.device)
        src = torch.where(pos < factor * strip, order[:, (pos // strip).clamp(max=factor - 1)] * strip + pos % strip,
                          pos)  # n x size: the source column (row) of each output one
        shape = [n, 1, 1, 1]
        shape[dim] = size
        x = x.gather(dim, src.view(shape).expand(x.shape))
    return x


def rded_augment(x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    """[0, 1] images -> ShufflePatches(FACTOR) -> RandomResizedCrop(scale (1 / FACTOR, 1)) -> flip
    (validation/main.py:115-125); the crop keeps the image size (the train images are already at
    the student's input size). Draws from `generator` (None: the global RNG)."""
    x = shuffle_patches(x, FACTOR, generator)
    return random_flip(random_resized_crop(x, scale=(1 / FACTOR, 1.0), generator=generator), generator=generator)


def rded_test_images(images: torch.Tensor, size: int) -> torch.Tensor:
    """uint8 test images -> Resize(size // 7 * 8) + CenterCrop(size), RDED's test transform
    (validation/main.py:154-155): 256 then 224 at 224 px; at 32 px, 32 (no crop)."""
    if isinstance(images, Images):  # a mapped split: each batch transformed as it is read
        return images.mapped(lambda batch: rded_test_images(batch, size), size)
    resized = resize_for_validation(images, max(size, size // 7 * 8))
    top, left = int(round((resized.shape[-2] - size) / 2)), int(round((resized.shape[-1] - size) / 2))
    return resized[..., top:top + size, left:left + size].contiguous()  # torchvision's CenterCrop offsets


def rded_batch_size(ipc: int, num_classes: int) -> int:
    """RDED's batch size rule (argument.py:233-258): 10, 50 or 100 for IPC 1, 10 or 50, doubled
    for 100 or 1000 classes, 100 for Tiny-ImageNet's 200 classes, at most ipc * num_classes.
    Other IPCs (RDED leaves them 0, which fails) take the entry of the largest listed IPC below
    them (our extension)."""
    if num_classes == 200:
        size = 100
    else:
        size = 100 if ipc >= 50 else 50 if ipc >= 10 else 10
        size *= 2 if num_classes in (100, 1000) else 1
    return max(1, min(size, ipc * num_classes))


def rded_evaluation_epochs(epochs: int, every: int = EVAL_EVERY, after: float = EVAL_AFTER) -> list[int]:
    """The (1-based) epochs after which RDED scores the test split: every `every`-th and the last,
    once the 0-based epoch index exceeds after * epochs (validation/main.py:179-180). The last
    epoch is always scored here (RDED scores none at all for epochs <= 5)."""
    scored = {e for e in range(every, epochs + 1, every) if e - 1 > after * epochs}
    return sorted(scored | {epochs})


def rded_lr_factor(epoch: int, epochs: int) -> float:
    """RDED's cosine factor of the learning rate in 0-based `epoch` (validation/main.py:95-102)."""
    return 0.5 * (1.0 + math.cos(math.pi * epoch / epochs / 2)) if epoch <= epochs else 0.0


def weight_decay_groups(model: nn.Module, weight_decay: float) -> list[dict]:
    """Weight decay on the conv and linear weights only: parameters named "weight" with more than
    one dimension; biases and norm scales take none (RDED validation/utils.py:67-84)."""
    decay, no_decay = [], []
    for name, p in model.named_parameters():
        (decay if "weight" in name and p.ndim > 1 else no_decay).append(p)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


def build_student(arch: str, in_channels: int, num_classes: int, resolution: int, width_factor: float) -> nn.Module:
    """The instance-norm nets of the IDC protocol (nets.ARCHS) or a batch-norm one (nets.BN_ARCHS,
    RDED's student: torchvision's resnet18)."""
    if arch in BN_ARCHS:
        return build_bn_net(arch, in_channels, num_classes, resolution, width_factor)
    if arch not in ARCHS:
        raise ValueError(f"unknown architecture {arch!r}; valid names: {', '.join(ARCHS + BN_ARCHS)}")
    return build_net(arch, in_channels, num_classes, resolution, width_factor)


# ----------------------------------------------------------------------------------------------
# Teacher
# ----------------------------------------------------------------------------------------------

def load_teacher(path: str | Path, num_classes: int, device: torch.device | str = "cpu") -> ResNet18BN:
    """A frozen ResNet18BN in eval mode from a torchvision-format ResNet-18 state dict saved with
    torch.save: a plain state dict, or one under a 'state_dict' or 'model' key (RDED's subset
    teachers, synthesize/utils.py:237-240), keys optionally prefixed 'module.' (DataParallel).

    `num_classes` is the number of outputs the teacher must have: the dataset's class count for a
    teacher of its classes, or the size of the label space `class_ids` index (1000 for ImageNet).
    The stem (7x7 or 3x3 first conv), input channels and width are read from the weights.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"teacher checkpoint {path} does not exist")
    try:  # tensors only (a file from elsewhere runs no code), plus the args of torchvision's train script
        with torch.serialization.safe_globals([argparse.Namespace]):
            state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:
        raise ValueError(f"teacher checkpoint {path} is not a torch checkpoint ({type(error).__name__}: "
                         f"{' '.join(str(error).split())[:200]})") from error
    if isinstance(state, dict):
        for key in ("state_dict", "model"):
            if isinstance(state.get(key), dict):
                state = state[key]
                break
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()) or not state:
        raise ValueError(f"teacher checkpoint {path} holds no state dict of tensors "
                         "(expected a torchvision resnet18 state_dict, optionally under 'state_dict' or 'model')")
    state = {k.removeprefix("module."): v for k, v in state.items()}
    conv1, fc = state.get("conv1.weight"), state.get("fc.weight")
    if conv1 is None or fc is None or conv1.ndim != 4 or fc.ndim != 2:
        raise ValueError(f"teacher checkpoint {path} is not a torchvision-format ResNet-18 "
                         f"(no conv1.weight / fc.weight; its first keys: {', '.join(list(state)[:4])})")
    if fc.shape[0] != num_classes:
        raise ValueError(f"teacher checkpoint {path} has {fc.shape[0]} output classes (fc.weight "
                         f"{fc.shape[0]} x {fc.shape[1]}), expected {num_classes}")
    teacher = ResNet18BN(conv1.shape[1], num_classes, stem="imagenet" if conv1.shape[-1] == 7 else "small",
                         width=conv1.shape[0])
    expected = teacher.state_dict()
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected]
    if missing or unexpected:
        parts = ([f"missing keys {missing[:5]}{' ...' if len(missing) > 5 else ''}"] if missing else []) + \
                ([f"unexpected keys {unexpected[:5]}{' ...' if len(unexpected) > 5 else ''}"] if unexpected else [])
        raise ValueError(f"teacher checkpoint {path} is not a torchvision resnet18 state dict: {'; '.join(parts)}")
    wrong = [f"{k} {tuple(state[k].shape)} (expected {tuple(v.shape)})" for k, v in expected.items()
             if state[k].shape != v.shape]
    if wrong:
        raise ValueError(f"teacher checkpoint {path} has tensors of the wrong shape: {', '.join(wrong[:3])}")
    teacher.load_state_dict(state)
    return freeze(teacher.to(device))


def freeze(teacher: nn.Module) -> nn.Module:
    """Eval mode and no gradients (RDED validation/main.py:69-74)."""
    teacher.eval()
    for p in teacher.parameters():
        p.requires_grad_(False)
    return teacher


def _class_index(class_ids, num_classes: int, device) -> torch.Tensor | None:
    if class_ids is None:
        return None
    ids = [int(i) for i in class_ids]
    if len(ids) != num_classes:
        raise ValueError(f"class_ids has {len(ids)} entries but there are {num_classes} classes")
    if min(ids) < 0 or len(set(ids)) != len(ids):
        raise ValueError(f"class_ids must be distinct non-negative teacher classes, got {ids[:10]}")
    return torch.tensor(ids, device=device)


def check_teacher_outputs(outputs: int, index: torch.Tensor | None, num_classes: int) -> None:
    """The teacher's `outputs` classes hold the dataset's: exactly `num_classes` of them without
    class_ids, more than the largest class id with them."""
    if index is None and outputs != num_classes:
        raise ValueError(f"the teacher has {outputs} outputs but the dataset {num_classes} classes: "
                         "pass class_ids to read the dataset's classes from its outputs")
    if index is not None and int(index.max()) >= outputs:
        raise ValueError(f"class_ids reach {int(index.max())} but the teacher has only {outputs} outputs")


def teacher_logits(teacher: nn.Module, images: torch.Tensor, index: torch.Tensor | None) -> torch.Tensor:
    """The teacher's float logits of the dataset's classes, without gradients: its outputs at
    `index` (class_ids; RDED prunes the classifier rows alike, synthesize/utils.py:210-222), or all
    of them when None."""
    with torch.no_grad():
        logits = teacher(images).float()
    return logits if index is None else logits[:, index]


def check_teacher_class_order(teacher: nn.Module, images_uint8: torch.Tensor, labels: torch.Tensor,
                              class_ids, *, resolution: int | None, per_class: int, device: torch.device | str = "cpu",
                              min_accuracy: float | None = None, chunk: int = 100) -> float:
    """Top-1 accuracy (%) of the teacher on up to `per_class` real images of each class, restricted
    to the dataset's classes' logits (at `class_ids`, see `teacher_logits`); the images go through
    RDED's test transform at `resolution` (None: their size). Raises a ValueError saying the
    class order looks wrong when the accuracy is below `min_accuracy` (default: twice chance,
    but at most halfway between chance and 100%), which catches permuted or shifted class ids.
    """
    device = torch.device(device)
    labels = labels.long()
    num_classes = int(labels.max()) + 1 if class_ids is None else len(class_ids)
    index = _class_index(class_ids, num_classes, device)
    keep = torch.cat([torch.nonzero(labels == k).flatten()[:per_class] for k in range(num_classes)])
    x, y = images_uint8[keep], labels[keep].to(device)
    if len(y) == 0:
        raise ValueError("check_teacher_class_order got no images")
    x = rded_test_images(x, resolution or x.shape[-1])
    chance = 100.0 / num_classes
    if min_accuracy is None:
        min_accuracy = min(2 * chance, (100 + chance) / 2)
    teacher.eval()
    correct = 0
    for xb, yb in zip(x.split(chunk), y.split(chunk)):
        logits = teacher_logits(teacher, normalize_images(to_unit(xb, device), NORMALIZE), None)
        check_teacher_outputs(logits.shape[1], index, num_classes)
        logits = logits if index is None else logits[:, index]
        correct += int((logits.argmax(1) == yb).sum())
    accuracy = 100.0 * correct / len(y)
    if accuracy < min_accuracy:
        raise ValueError(f"the teacher's class order looks wrong: accuracy {accuracy:.1f}% on {len(y)} real images "
                         f"of the dataset's classes (chance {chance:.1f}%, needed {min_accuracy:.1f}%); check "
                         "dataset.class_ids (dataset class i must be the teacher's output class_ids[i])")
    return accuracy


# ----------------------------------------------------------------------------------------------
# Training
# ----------------------------------------------------------------------------------------------

class SoftLabelSteps:
    """RDED's protocol as the steps of classifier.train_classifiers: the frozen `teacher` labels
    every augmented, CutMixed batch (its logits at `class_index`, or all of them when None)."""

    vmappable = False  # batch-norm students: vmap cannot update running statistics in place
    normalize = NORMALIZE

    def __init__(self, arch: str, protocol: SoftLabel, teacher: nn.Module, class_index: torch.Tensor | None,
                 batch_size: int):
        self.arch, self.protocol, self.teacher, self.class_index = arch, protocol, teacher, class_index
        self.batch_size, self.precision = batch_size, protocol.precision

    def build_net(self, channels: int, num_classes: int, resolution: int) -> nn.Module:
        net = build_student(self.arch, channels, num_classes, resolution, self.protocol.width_factor)
        for m in net.modules():
            if isinstance(m, nn.modules.batchnorm._BatchNorm):
                m.momentum = BN_MOMENTUM
        return net

    def parameters(self, net: nn.Module):
        return weight_decay_groups(net, self.protocol.weight_decay)

    def optimizer(self, parameters) -> torch.optim.Optimizer:
        return torch.optim.AdamW(parameters, lr=self.protocol.lr, betas=BETAS)

    def scheduler(self, optimizer, epochs: int):
        return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda epoch: rded_lr_factor(epoch, epochs))

    def batch(self, x: torch.Tensor, y: torch.Tensor, idx: torch.Tensor, rng: RunRandom) -> tuple:
        images = normalize_images(rded_augment(to_unit(x[idx], x.device), rng.device), self.normalize)
        images = cutmix(images, idx, beta=CUTMIX_BETA, generator=rng.device, cpu_generator=rng.cpu)[0]  # the box only
        with autocast(x.device, self.precision):
            return images, teacher_logits(self.teacher, images, self.class_index)

    def loss(self, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        return soft_label_loss(logits, targets, self.protocol.temperature)

    def scored_epochs(self, epochs: int) -> list[int]:
        if self.protocol.evaluations is not None:
            return evaluation_epochs(epochs, self.protocol.evaluations)
        return rded_evaluation_epochs(epochs)

    def record(self) -> dict:
        return {"protocol": "soft_label", "augment": "rded", "normalize": self.normalize, "factor": FACTOR,
                **self.protocol.params(), "batch_size": self.batch_size}


def train_soft_label(protocol: SoftLabel, arch: str, train_x: torch.Tensor, teacher: nn.Module,
                     test_x: torch.Tensor | None, test_y: torch.Tensor | None, *, num_classes: int, class_ids,
                     seeds: list[int], epochs: int, device: torch.device | str, progress: bool,
                     checkpointer: Checkpointer | None) -> list[tuple[nn.Module, dict]]:
    """Train `arch` from scratch once per seed of `seeds` on the uint8 images `train_x` with
    RDED's soft-label protocol (see the module docstring); [(student in eval mode, record)] in
    the order of `seeds`, as classifier.train_classifiers returns them.

    The surrogate set's labels are not used (the teacher labels every crop), so there is no
    train_y. Train images are resized to `protocol.resolution` as validate.resize_for_validation
    (None: kept); test images take RDED's Resize(size // 7 * 8) + CenterCrop(size).
    `protocol.batch_size` None is `rded_batch_size(len(train_x) // num_classes, num_classes)`. The
    test split is scored after the epochs of `rded_evaluation_epochs(epochs)`, or, with
    `protocol.evaluations`, of validate.evaluation_epochs (the IDC cadence). `class_ids`: the
    teacher's output of each dataset class (None: output i is class i).
    """
    labels = torch.zeros(len(train_x), dtype=torch.int64)  # unused: the teacher labels every crop
    check_split("train", train_x, labels, num_classes)
    device = torch.device(device)
    train_x = resize_for_validation(train_x, protocol.resolution)
    channels, size = train_x.shape[1], train_x.shape[-1]
    if test_x is not None:
        check_split("test", test_x, test_y, num_classes)
        test_x = rded_test_images(test_x, size)
    batch_size = protocol.batch_size or rded_batch_size(max(1, len(train_x) // num_classes), num_classes)
    index = _class_index(class_ids, num_classes, device)
    teacher = freeze(teacher.to(device))
    with torch.no_grad():  # once, not a device sync per step; 2 images: instance norm of a 1x1 map needs 2
        check_teacher_outputs(teacher(torch.zeros(2, channels, size, size, device=device)).shape[1], index, num_classes)
    steps = SoftLabelSteps(arch, protocol, teacher, index, batch_size)
    return train_classifiers(steps, train_x, labels, seeds=seeds, num_classes=num_classes, epochs=epochs,
                             device=device, mode="loop", channels_last=False, test_x=test_x, test_y=test_y,
                             progress=progress, checkpointer=checkpointer)

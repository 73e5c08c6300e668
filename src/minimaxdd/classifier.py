"""One training loop for every classifier the workflow trains: the validation nets under IDC's
hard-label protocol (validate.HardLabelSteps), under RDED's soft-label protocol
(softlabel.SoftLabelSteps), and the feature network of the analyses (features.py).

A protocol contributes its *steps* (the `Steps` interface below): how a net, its optimiser and its
schedule are built, how one training batch is drawn (augmentation, CutMix, the targets) and
scored (the loss), and after which epochs the test split is scored. `train_classifiers` does the
rest, the same for every protocol: seeding, data order, progress, scoring, resume checkpoints and
the run record.

It trains a *group* of runs, one per seed, on the same set, scored on the same test split (one
run alone is a group of one; validate.group_seeds puts every seed of a (method, IPC, net) in one
job). Every run keeps the random draws of its run alone: its weights are built under its seed,
its data order comes from its own generator, and its augmentation and CutMix draws from its own
generators, in the state the global RNG has after building the net (`build_run`). So a run's
record does not depend on the group it was trained in. Two ways to train a group (`mode`):

- "loop": each run keeps its own net and optimiser, and the runs take their steps in turn: the
  arithmetic of the runs alone, bit for bit. On the CPU this is the faster mode
  (benchmarks/group_validation.py: 0.9-1.1x the runs per hour of one run at a time, against
  0.5-0.95x for "vmap": the small nets' kernels are compute bound on the CPU, and grouped
  convolutions are slower than separate ones). Its gain is per job: one process start, import and
  data load for the group instead of one per run.
- "vmap": the runs' parameters are stacked (torch.func.stack_module_state) and one forward and
  backward pass of `torch.func.vmap(functional_call)` trains all of them on their stacked batches
  (convolutions become grouped ones); one optimiser over the stacked tensors updates every run as
  its own would (SGD acts elementwise). Same draws, other kernels: one step equals the runs
  alone's up to float rounding (tests/test_group.py bounds it by the dtype's eps, weights compared
  in float64). Over many steps training amplifies rounding, and a ReLU input within rounding of 0
  can flip its gate, so a vmapped run is another sample of the same run rather than a bit copy;
  ResNet-18 at 16 px amplifies most (instance norm over 2 x 2 maps). Meant for accelerators, where tiny nets are bound
  by kernel launches. Only for protocols whose steps allow it (`Steps.vmappable`: not batch norm,
  whose running statistics vmap cannot update in place).
- "auto": "vmap" on CUDA where the steps allow it, else "loop".

A group saves one resume checkpoint (every `checkpointer.every` epochs) holding every run's state;
resumed, it continues bit for bit as the uninterrupted group.
"""

from __future__ import annotations

import copy
import time
from dataclasses import dataclass
from typing import Callable, Protocol

import torch
from torch import nn
from tqdm import tqdm

from .augment import normalize as normalize_images
from .io import autocast
from .resume import Checkpointer

GROUP_MODES = ("auto", "loop", "vmap")


def to_unit(images: torch.Tensor, device: torch.device | str) -> torch.Tensor:
    """uint8 N x C x H x W -> float in [0, 1] on `device`, as torchvision's ToTensor."""
    return images.to(device).float().div_(255)


def to_model_input(images: torch.Tensor, device: torch.device | str, normalize: str) -> torch.Tensor:
    """uint8 images -> normalized float on `device`: the test-time input (no augmentation)."""
    return normalize_images(to_unit(images, device), normalize)


@torch.inference_mode()
def evaluate(model: nn.Module, x: torch.Tensor, y: torch.Tensor, device: torch.device | str, normalize: str,
             precision: str, batch_size: int = 256) -> float:
    """Top-1 accuracy in percent of `model` on uint8 images `x`, moved to `device` a batch at a time
    (`batch_size` bounds memory only: it changes no result)."""
    device = torch.device(device)
    model.eval()
    correct = torch.zeros((), dtype=torch.int64, device=device)
    with autocast(device, precision):
        for xb, yb in zip(x.split(batch_size), y.split(batch_size)):
            correct += (model(to_model_input(xb, device, normalize)).argmax(1) == yb.to(device)).sum()
    return 100.0 * correct.item() / len(y)


def check_split(name: str, x: torch.Tensor, y: torch.Tensor, num_classes: int) -> None:
    """uint8 N x C x H x W images (C 1 or 3, square), one label in [0, num_classes) each."""
    if x.dtype != torch.uint8 or x.ndim != 4 or x.shape[1] not in (1, 3) or x.shape[2] != x.shape[3]:
        raise ValueError(f"{name}_x must be uint8 N x C x H x W with C in (1, 3) and H == W, "
                         f"got {x.dtype} of shape {tuple(x.shape)}")
    if len(x) == 0:
        raise ValueError(f"{name}_x is empty: there is nothing to {name} on")
    if y.shape != (len(x),):
        raise ValueError(f"{name}_y must hold one label per image ({len(x)}), got shape {tuple(y.shape)}")
    if y.min() < 0 or y.max() >= num_classes:
        raise ValueError(f"{name}_y has labels in [{y.min()}, {y.max()}], outside [0, {num_classes})")


class Steps(Protocol):
    """What a protocol contributes to the loop."""

    arch: str
    batch_size: int
    normalize: str
    precision: str
    vmappable: bool

    def build_net(self, channels: int, num_classes: int, resolution: int) -> nn.Module: ...

    def parameters(self, net: nn.Module): ...  # what the optimiser takes: parameters or groups

    def optimizer(self, parameters) -> torch.optim.Optimizer: ...

    def scheduler(self, optimizer: torch.optim.Optimizer, epochs: int): ...  # stepped per epoch

    def batch(self, x: torch.Tensor, y: torch.Tensor, idx: torch.Tensor, rng: RunRandom) -> tuple: ...

    def loss(self, logits: torch.Tensor, targets) -> torch.Tensor: ...

    def scored_epochs(self, epochs: int) -> list[int]: ...

    def record(self) -> dict: ...  # the protocol's facts in every run record


@dataclass
class RunRandom:
    """The generators of one run: the data order (CPU), the CPU draws and the draws on the device
    (those of the global RNGs of the run alone; one generator on the CPU)."""

    order: torch.Generator
    cpu: torch.Generator
    device: torch.Generator

    def state(self) -> list[torch.Tensor]:
        return [g.get_state() for g in (self.order, self.cpu, self.device)]

    def restore(self, states: list[torch.Tensor]) -> None:
        for g, s in zip((self.order, self.cpu, self.device), states):
            g.set_state(s)


def build_run(seed: int, make_net: Callable[[], nn.Module], device: torch.device) -> tuple[nn.Module, RunRandom]:
    """The net of `seed` and its generators, as a run alone draws them after torch.manual_seed(seed):
    the net's weights first, then everything else from the global RNG's state after them. The
    caller's global RNG is left as it was."""
    with torch.random.fork_rng(devices=[]):
        torch.default_generator.manual_seed(seed)  # the CPU part of torch.manual_seed(seed)
        net = make_net()
        cpu = torch.Generator()
        cpu.set_state(torch.get_rng_state())  # the global RNG after the weights' draws
    on_device = cpu if device.type == "cpu" else torch.Generator(device=device).manual_seed(seed)
    return net.to(device), RunRandom(torch.Generator().manual_seed(seed), cpu, on_device)


class Loop:
    """Each run its own net, optimiser and schedule; steps taken in turn."""

    def __init__(self, nets: list[nn.Module], steps: Steps, epochs: int):
        self.nets, self.steps = nets, steps
        self.optimizers = [steps.optimizer(steps.parameters(n)) for n in nets]
        self.schedulers = [steps.scheduler(o, epochs) for o in self.optimizers]

    def train_step(self, batches: list[tuple], device: torch.device) -> torch.Tensor:
        """One step of every run on its batch; the runs' detached losses."""
        losses = []
        for net, optimizer, (images, targets) in zip(self.nets, self.optimizers, batches):
            net.train()
            with autocast(device, self.steps.precision):
                loss = self.steps.loss(net(images), targets)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            losses.append(loss.detach())
        return torch.stack(losses)

    def end_epoch(self) -> None:
        for scheduler in self.schedulers:
            scheduler.step()

    def evaluate(self, test_x, test_y, device) -> list[float]:
        return [evaluate(net, test_x, test_y, device, self.steps.normalize, self.steps.precision) for net in self.nets]

    def models(self) -> list[nn.Module]:
        return self.nets

    def state(self) -> dict:
        return {"models": [n.state_dict() for n in self.nets],
                "optimizers": [o.state_dict() for o in self.optimizers],
                "schedulers": [s.state_dict() for s in self.schedulers]}

    def load(self, saved: dict) -> None:
        for net, state in zip(self.nets, saved["models"]):
            net.load_state_dict(state)
        for optimizer, state in zip(self.optimizers, saved["optimizers"]):
            optimizer.load_state_dict(state)
        for scheduler, state in zip(self.schedulers, saved["schedulers"]):
            scheduler.load_state_dict(state)


class Vmap:
    """The runs' parameters stacked along a leading run axis; one vmapped pass trains them all."""

    def __init__(self, nets: list[nn.Module], steps: Steps, epochs: int):
        from torch.func import stack_module_state

        self.nets, self.steps = nets, steps
        params, self.buffers = stack_module_state(nets)
        self.params = {k: v.detach().requires_grad_() for k, v in params.items()}
        self.base = copy.deepcopy(nets[0]).to("meta")  # structure only: functional_call supplies the tensors
        self.optimizer = steps.optimizer(list(self.params.values()))  # elementwise: each run's own
        self.scheduler = steps.scheduler(self.optimizer, epochs)

    def _forward(self, images: torch.Tensor, shared_input: bool = False) -> torch.Tensor:
        from torch.func import functional_call, vmap

        def run(params, buffers, x):
            return functional_call(self.base, (params, buffers), (x,))

        return vmap(run, in_dims=(0, 0, None if shared_input else 0))(self.params, self.buffers, images)

    def train_step(self, batches: list[tuple], device: torch.device) -> torch.Tensor:
        self.base.train()
        with autocast(device, self.steps.precision):
            logits = self._forward(torch.stack([images for images, _ in batches]))
            losses = torch.stack([self.steps.loss(run_logits, targets)
                                  for run_logits, (_, targets) in zip(logits, batches)])
        self.optimizer.zero_grad(set_to_none=True)
        losses.sum().backward()  # run r's loss depends on run r's parameters only
        self.optimizer.step()
        return losses.detach().float()

    def end_epoch(self) -> None:
        self.scheduler.step()

    @torch.inference_mode()
    def evaluate(self, test_x, test_y, device, batch_size: int = 256) -> list[float]:
        self.base.eval()
        correct = torch.zeros(len(self.nets), dtype=torch.int64, device=device)
        with autocast(device, self.steps.precision):
            for xb, yb in zip(test_x.split(batch_size), test_y.split(batch_size)):
                logits = self._forward(to_model_input(xb, device, self.steps.normalize), shared_input=True)
                correct += (logits.argmax(-1) == yb.to(device)).sum(1)
        return [100.0 * c / len(test_y) for c in correct.tolist()]

    def models(self) -> list[nn.Module]:
        with torch.no_grad():
            for r, net in enumerate(self.nets):
                net.load_state_dict({k: v[r] for k, v in (self.params | self.buffers).items()})
        return self.nets

    def state(self) -> dict:
        return {"params": {k: v.detach() for k, v in self.params.items()}, "buffers": self.buffers,
                "optimizer": self.optimizer.state_dict(), "scheduler": self.scheduler.state_dict()}

    def load(self, saved: dict) -> None:
        with torch.no_grad():
            for k, v in saved["params"].items():
                self.params[k].copy_(v)
            for k, v in saved["buffers"].items():
                self.buffers[k].copy_(v)
        self.optimizer.load_state_dict(saved["optimizer"])
        self.scheduler.load_state_dict(saved["scheduler"])


def group_mode(mode: str, device: torch.device | str, steps: Steps) -> str:
    """The mode "auto" stands for: "vmap" on CUDA where the steps allow it, else "loop"."""
    if mode not in GROUP_MODES:
        raise ValueError(f"unknown group mode {mode!r}; valid names: {', '.join(GROUP_MODES)}")
    if mode == "vmap" and not steps.vmappable:
        raise ValueError(f"group mode 'vmap' cannot train {steps.arch} under this protocol; use 'loop'")
    if mode != "auto":
        return mode
    return "vmap" if torch.device(device).type == "cuda" and steps.vmappable else "loop"


def memory_format(channels_last: bool) -> torch.memory_format:
    return torch.channels_last if channels_last else torch.contiguous_format


def build_group(steps: Steps, seeds: list[int], channels: int, num_classes: int, resolution: int,
                device: torch.device, epochs: int, mode: str, channels_last: bool):
    """The runs of `seeds` (nets, optimisers, schedules, generators) and the trainer that steps them
    (`Loop` or `Vmap`, as `mode` resolves on `device`). Returns (trainer, generators, mode, channels_last):
    vmap cannot batch channels-last group norm (torch 2.13), so it keeps the default format."""
    mode = group_mode(mode, device, steps)
    channels_last = channels_last and mode == "loop"
    built = [build_run(s, lambda: steps.build_net(channels, num_classes, resolution), device) for s in seeds]
    nets = [net.to(memory_format=memory_format(channels_last)) for net, _ in built]
    trainer = (Loop if mode == "loop" else Vmap)(nets, steps, epochs)
    return trainer, [rng for _, rng in built], mode, channels_last


def train_classifiers(steps: Steps, train_x: torch.Tensor, train_y: torch.Tensor, *, seeds: list[int],
                      num_classes: int, epochs: int, device: torch.device | str, mode: str, channels_last: bool,
                      test_x: torch.Tensor | None, test_y: torch.Tensor | None, progress: bool,
                      checkpointer: Checkpointer | None,
                      on_epoch: Callable[[int, list[nn.Module]], None] | None = None) -> list[tuple[nn.Module, dict]]:
    """Train one classifier per seed of `seeds` on the uint8 images (train_x, train_y) with `steps`;
    return [(model in eval mode, record)] in the order of `seeds`.

    With a test split, a record holds its top-1 accuracy after each epoch of
    `steps.scored_epochs(epochs)` as `curve` ([epoch, accuracy] pairs), the last one as
    `accuracy_last`, the best as `accuracy_best`, first reached at `best_epoch` (IDC train.py L147
    and RDED validation/main.py:188: strictly better replaces). A training set given as a tensor
    lives on `device` as uint8 (surrogate sets are small); a mapped split (shards.Images: the real
    training split) is read and moved a batch at a time. The same inputs and seed give the same
    record on the CPU, whatever the group, also when resumed from `checkpointer`. "wall_s" is the run's share of the
    group's time ("group_wall_s"). `channels_last` stores the nets in channels-last format (faster
    convolutions on GPUs). `on_epoch(epoch, models)` sees the nets before training (epoch 0, unless
    resumed) and after each epoch (IGD's surrogate keeps its trajectory so).
    """
    seeds = [int(s) for s in seeds]
    if not seeds:
        raise ValueError("seeds is empty: a group needs at least one run")
    if len(set(seeds)) != len(seeds):
        raise ValueError(f"seeds must differ, got {seeds}")
    if epochs < 1:
        raise ValueError(f"epochs must be at least 1, got {epochs}")
    check_split("train", train_x, train_y, num_classes)
    if test_x is not None:
        check_split("test", test_x, test_y, num_classes)
    start = time.perf_counter()
    device = torch.device(device)
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True  # fixed input shapes: let cuDNN pick its kernels
    channels, resolution = train_x.shape[1], train_x.shape[2]
    trainer, rngs, mode, channels_last = build_group(steps, seeds, channels, num_classes, resolution, device, epochs,
                                                     mode, channels_last)
    # an image set lives on the device; a mapped split of the real data stays on the host, gathered
    # and moved a batch at a time
    x, y = train_x.to(device) if isinstance(train_x, torch.Tensor) else train_x, train_y.long().to(device)
    scored = set(steps.scored_epochs(epochs)) if test_x is not None else set()

    checkpointer = checkpointer or Checkpointer()
    first, epoch_losses, curves = 0, [float("nan")] * len(seeds), [[] for _ in seeds]
    saved = checkpointer.load()
    if saved and saved.get("seeds") == seeds and saved.get("mode") == mode:
        trainer.load(saved["trainer"])
        for rng, states in zip(rngs, saved["rngs"]):
            rng.restore(states)
        first, epoch_losses, curves = saved["step"], saved["epoch_losses"], saved["curves"]
    elif saved:
        checkpointer.log(f"ignoring checkpoint {checkpointer.path}: it belongs to another group of seeds")

    if on_epoch and first == 0:
        on_epoch(0, trainer.models())
    runs = f"{len(seeds)} x " if len(seeds) > 1 else ""
    bar = tqdm(range(first, epochs), initial=first, total=epochs, disable=not progress,
               desc=f"{runs}{steps.arch} on {len(x)} images ({mode})")
    for epoch in bar:
        orders = [torch.randperm(len(x), generator=rng.order).to(device).split(steps.batch_size) for rng in rngs]
        loss_sums = torch.zeros(len(seeds), device=device)
        for step_idx in zip(*orders):  # every run has the same batch sizes
            batches = [steps.batch(*on_device(x, y, idx), rng) for idx, rng in zip(step_idx, rngs)]
            loss_sums += trainer.train_step(batches, device) * len(step_idx[0])
        trainer.end_epoch()
        if on_epoch:
            on_epoch(epoch + 1, trainer.models())
        epoch_losses = [s / len(x) for s in loss_sums.tolist()]  # one device sync per epoch
        if epoch + 1 in scored:  # no random draw: scoring leaves the runs as they are
            for curve, accuracy in zip(curves, trainer.evaluate(test_x, test_y, device)):
                curve.append([epoch + 1, accuracy])
        bar.set_postfix(loss=f"{sum(epoch_losses) / len(seeds):.3g}",
                        **({"acc": f"{curves[0][-1][1]:.1f}"} if curves[0] else {}))
        if checkpointer.due(epoch + 1, epochs):
            checkpointer.save(epoch + 1, {"seeds": seeds, "mode": mode, "trainer": trainer.state(),
                                          "rngs": [rng.state() for rng in rngs], "epoch_losses": epoch_losses,
                                          "curves": curves})

    wall = time.perf_counter() - start
    results = []
    for model, seed, epoch_loss, curve in zip(trainer.models(), seeds, epoch_losses, curves):
        record = {"final_loss": epoch_loss,  # mean training loss of the last epoch
                  "epochs": epochs, "train_images": len(x), "wall_s": wall / len(seeds), "device": str(device),
                  "arch": steps.arch, "seed": seed, "channels_last": channels_last,
                  "group_size": len(seeds), "group_mode": mode, "group_wall_s": wall}
        results.append((model.eval(), record | steps.record() | {"resolution": resolution} | curve_scores(curve)))
    return results


def on_device(x, y: torch.Tensor, idx: torch.Tensor) -> tuple:
    """What `Steps.batch` indexes: (x, y, idx) as they are when x is on the device; for a mapped
    split, the batch's images gathered and moved, with the index of each in the batch."""
    if isinstance(x, torch.Tensor):
        return x, y, idx
    return x[idx].to(idx.device), y[idx], torch.arange(len(idx), device=idx.device)


def curve_scores(curve: list) -> dict:
    """The last and the best test accuracy of a run's curve, with the epoch of the best."""
    if not curve:
        return {}
    best = max(curve, key=lambda point: point[1])  # the first of equal maxima
    return {"accuracy_last": curve[-1][1], "accuracy_best": best[1], "best_epoch": best[0], "curve": curve}

"""Packed validation: the runs of several seeds (one method, IPC and net) trained in one job.

`train_packed` trains one classifier per seed on the same surrogate set, scored on the same test
split, and returns per run what `validate.train_classifier` returns for that seed alone. The set
and the test split are loaded, resized and moved to the device once for the pack. Every run keeps
the random draws of its run alone: its weights are built under its seed, its data order comes from
its own generator seeded as `train_classifier`'s, and its augmentation and CutMix draws from its
own generators, in the state the global RNG has in the run alone after building the net.

Two ways to train the pack (`mode`):

- "loop": each run keeps its own net and optimiser, and the runs take their steps in turn. The
  arithmetic is that of the runs alone: records and weights are equal to them bit for bit. On the
  CPU this is the faster mode (benchmarks/packed_validation.py: 0.9-1.1x the runs per hour of
  one run at a time, against 0.5-0.95x for "vmap": the small nets' kernels are compute bound on
  the CPU, and grouped convolutions are slower than the separate ones). Its gain is per job:
  one process start, import and data load for the pack instead of one per run.
- "vmap": the runs' parameters are stacked (torch.func.stack_module_state) and one forward and
  backward pass of `torch.func.vmap(functional_call)` trains all of them on their stacked batches
  (convolutions become grouped ones); one SGD over the stacked tensors updates every run as its
  own SGD would. Same draws, other kernels: weights equal to the runs alone up to float rounding
  (tested on the CPU for ConvNet and ResNetAP-10: within 1e-5 after 4 epochs, measured 5e-7, and
  equal accuracy curves). ResNet-18 at 16 px amplifies rounding chaotically (instance norm over
  2 x 2 maps: a 1e-7 change of a run alone's initial weights moves its weights by O(1) within
  two epochs), so there a vmapped run is another sample of the same run, not a copy. Meant for
  accelerators, where tiny nets are bound by kernel launches; on the CPU it is slower than "loop".
- "auto": "vmap" on CUDA, else "loop".

A pack saves one resume checkpoint (every `checkpointer.every` epochs) holding every run's state;
resumed, it continues bit for bit as the uninterrupted pack.
"""

from __future__ import annotations

import copy
import time
from dataclasses import dataclass

import torch
from torch import nn
from torch.nn import functional as F
from tqdm import tqdm

from minimaxdd.augment import augment_batch, cutmix
from minimaxdd.augment import normalize as normalize_images
from minimaxdd.io import autocast
from minimaxdd.nets import arch_label, build_net
from minimaxdd.resume import Checkpointer
from minimaxdd.validate import (_check_split, check_training_inputs, curve_scores, evaluate, evaluation_epochs,
                                memory_format, resize_for_validation, to_model_input, to_unit)

PACK_MODES = ("auto", "loop", "vmap")


@dataclass
class RunRandom:
    """The generators of one packed run: the data order (CPU, as `train_classifier`'s order_rng),
    the CPU draws and the draws on the device (the global RNGs of the run alone; one generator on
    the CPU)."""

    order: torch.Generator
    cpu: torch.Generator
    device: torch.Generator

    def state(self) -> list[torch.Tensor]:
        return [g.get_state() for g in (self.order, self.cpu, self.device)]

    def restore(self, states: list[torch.Tensor]) -> None:
        for g, s in zip((self.order, self.cpu, self.device), states):
            g.set_state(s)


def build_run(seed: int, arch: str, channels: int, num_classes: int, resolution: int, width_factor: float,
              device: torch.device) -> tuple[nn.Module, RunRandom]:
    """The net of `seed` and its generators, as `train_classifier` builds them after
    torch.manual_seed(seed); the caller's global RNG is left as it was."""
    with torch.random.fork_rng(devices=[]):
        torch.default_generator.manual_seed(seed)  # the CPU part of torch.manual_seed(seed)
        net = build_net(arch, channels, num_classes, resolution, width_factor)
        cpu = torch.Generator()
        cpu.set_state(torch.get_rng_state())  # the global RNG after the weights' draws
    on_device = cpu if device.type == "cpu" else torch.Generator(device=device).manual_seed(seed)
    return net.to(device), RunRandom(torch.Generator().manual_seed(seed), cpu, on_device)


def draw_batch(x: torch.Tensor, y: torch.Tensor, idx: torch.Tensor, rng: RunRandom, augment: str, normalize: str,
               device: torch.device) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, float]:
    """One run's training batch: augmentation, normalisation and CutMix, as `train_classifier`."""
    images = normalize_images(augment_batch(to_unit(x[idx], device), augment, generator=rng.device), normalize)
    return cutmix(images, y[idx], generator=rng.device, cpu_generator=rng.cpu)


def _scheduler(optimizer, epochs: int):
    return torch.optim.lr_scheduler.MultiStepLR(optimizer, milestones=[2 * epochs // 3, 5 * epochs // 6], gamma=0.2)


class _Loop:
    """Each run its own net, optimiser and schedule; steps taken in turn."""

    def __init__(self, nets, lr, momentum, weight_decay, epochs):
        self.nets = nets
        self.optimizers = [torch.optim.SGD(n.parameters(), lr, momentum=momentum, weight_decay=weight_decay)
                           for n in nets]
        self.schedulers = [_scheduler(o, epochs) for o in self.optimizers]

    def train_step(self, batches, device, precision) -> torch.Tensor:
        losses = []
        for net, optimizer, (images, y_a, y_b, lam) in zip(self.nets, self.optimizers, batches):
            net.train()
            with autocast(device, precision):
                logits = net(images)
                loss = lam * F.cross_entropy(logits, y_a) + (1 - lam) * F.cross_entropy(logits, y_b)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            losses.append(loss.detach())
        return torch.stack(losses)

    def end_epoch(self) -> None:
        for scheduler in self.schedulers:
            scheduler.step()

    def evaluate(self, test_x, test_y, device, normalize, precision) -> list[float]:
        return [evaluate(net, test_x, test_y, device, normalize=normalize, precision=precision) for net in self.nets]

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


class _Vmap:
    """The runs' parameters stacked along a leading run axis; one vmapped pass trains them all."""

    def __init__(self, nets, lr, momentum, weight_decay, epochs):
        from torch.func import stack_module_state

        self.nets = nets
        params, self.buffers = stack_module_state(nets)
        self.params = {k: v.detach().requires_grad_() for k, v in params.items()}
        self.base = copy.deepcopy(nets[0]).to("meta")  # structure only: functional_call supplies the tensors
        # SGD acts elementwise: on the stacked tensors it is each run's own SGD
        self.optimizer = torch.optim.SGD(list(self.params.values()), lr, momentum=momentum,
                                         weight_decay=weight_decay)
        self.scheduler = _scheduler(self.optimizer, epochs)

    def _forward(self, images: torch.Tensor, shared_input: bool = False) -> torch.Tensor:
        from torch.func import functional_call, vmap

        def run(params, buffers, x):
            return functional_call(self.base, (params, buffers), (x,))

        return vmap(run, in_dims=(0, 0, None if shared_input else 0))(self.params, self.buffers, images)

    def train_step(self, batches, device, precision) -> torch.Tensor:
        images = torch.stack([b[0] for b in batches])
        y_a, y_b = torch.stack([b[1] for b in batches]), torch.stack([b[2] for b in batches])
        lam = torch.tensor([b[3] for b in batches])
        if lam.device != device:  # pinned, so that the copy does not wait for the device
            lam = lam.pin_memory().to(device, non_blocking=True)
        runs, n = y_a.shape
        self.base.train()
        with autocast(device, precision):
            logits = self._forward(images).flatten(0, 1)
            ce_a = F.cross_entropy(logits, y_a.flatten(), reduction="none").view(runs, n).mean(1)
            ce_b = F.cross_entropy(logits, y_b.flatten(), reduction="none").view(runs, n).mean(1)
            losses = lam * ce_a + (1 - lam) * ce_b
        self.optimizer.zero_grad(set_to_none=True)
        losses.sum().backward()  # run r's loss depends on run r's parameters only
        self.optimizer.step()
        return losses.detach().float()

    def end_epoch(self) -> None:
        self.scheduler.step()

    @torch.inference_mode()
    def evaluate(self, test_x, test_y, device, normalize, precision, batch_size: int = 256) -> list[float]:
        self.base.eval()
        correct = torch.zeros(len(self.nets), dtype=torch.int64, device=device)
        with autocast(device, precision):
            for xb, yb in zip(test_x.split(batch_size), test_y.split(batch_size)):
                logits = self._forward(to_model_input(xb, device, normalize), shared_input=True)
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


def build_pack(mode: str, nets: list[nn.Module], lr: float, momentum: float, weight_decay: float, epochs: int):
    """The runs' nets, SGD optimisers and schedules, trained by `train_step(batches, device, precision)`
    (one batch per run) in turn ("loop") or stacked ("vmap")."""
    return (_Loop if mode == "loop" else _Vmap)(nets, lr, momentum, weight_decay, epochs)


def pack_mode(mode: str, device: torch.device | str) -> str:
    """The mode "auto" stands for on `device`: "vmap" on CUDA, else "loop"."""
    if mode not in PACK_MODES:
        raise ValueError(f"unknown pack mode {mode!r}; valid names: {', '.join(PACK_MODES)}")
    if mode != "auto":
        return mode
    return "vmap" if torch.device(device).type == "cuda" else "loop"


def train_packed(train_x: torch.Tensor, train_y: torch.Tensor, *, seeds: list[int], arch: str, num_classes: int,
                 epochs: int, device: torch.device | str = "cpu", batch_size: int = 64, lr: float = 0.01,
                 momentum: float = 0.9, weight_decay: float = 5e-4, width_factor: float = 1.0,
                 augment: str = "idc", normalize: str = "imagenet", evaluations: int = 100,
                 precision: str = "fp32", test_x: torch.Tensor | None = None, test_y: torch.Tensor | None = None,
                 progress: bool = True, checkpointer: Checkpointer | None = None,
                 mode: str = "auto", channels_last: bool = False) -> list[tuple[nn.Module, dict]]:
    """Train one classifier per seed of `seeds` on (train_x, train_y), all in one pack; return
    [(model, record)] in the order of `seeds`, each as `validate.train_classifier` with that
    seed returns it ("loop": equal bit for bit; "vmap": up to float rounding), its record
    extended by "packed" (the number of runs in the pack), "pack_mode" and "pack_wall_s" (the
    pack's wall time; "wall_s" is its share, the pack's time divided by the runs)."""
    seeds = [int(s) for s in seeds]
    if not seeds:
        raise ValueError("seeds is empty: a pack needs at least one run")
    if len(set(seeds)) != len(seeds):
        raise ValueError(f"seeds must differ, got {seeds}")
    check_training_inputs(train_x, train_y, test_x, test_y, num_classes, epochs, augment, normalize)
    start = time.perf_counter()
    device = torch.device(device)
    mode = pack_mode(mode, device)
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True

    channels, resolution = train_x.shape[1], train_x.shape[2]
    built = [build_run(s, arch, channels, num_classes, resolution, width_factor, device) for s in seeds]
    channels_last = channels_last and mode == "loop"  # vmap cannot batch channels-last group norm (torch 2.13)
    nets, rngs = [b[0].to(memory_format=memory_format(channels_last)) for b in built], [b[1] for b in built]
    pack = build_pack(mode, nets, lr, momentum, weight_decay, epochs)
    x, y = train_x.to(device), train_y.long().to(device)
    scored = set(evaluation_epochs(epochs, evaluations)) if test_x is not None else set()

    checkpointer = checkpointer or Checkpointer()
    first, epoch_losses, curves = 0, [float("nan")] * len(seeds), [[] for _ in seeds]
    saved = checkpointer.load()
    if saved and saved.get("seeds") == seeds and saved.get("mode") == mode:
        pack.load(saved["pack"])
        for rng, states in zip(rngs, saved["rngs"]):
            rng.restore(states)
        first, epoch_losses, curves = saved["step"], saved["epoch_losses"], saved["curves"]
    elif saved:
        checkpointer.log(f"ignoring checkpoint {checkpointer.path}: it belongs to another pack")

    bar = tqdm(range(first, epochs), initial=first, total=epochs, disable=not progress,
               desc=f"{len(seeds)} x {arch_label(arch, resolution)} on {len(x)} images ({mode})")
    for epoch in bar:
        orders = [torch.randperm(len(x), generator=rng.order).to(device).split(batch_size) for rng in rngs]
        loss_sums = torch.zeros(len(seeds), device=device)
        for step_idx in zip(*orders):  # every run has the same batch sizes
            batches = [draw_batch(x, y, idx, rng, augment, normalize, device) for idx, rng in zip(step_idx, rngs)]
            loss_sums += pack.train_step(batches, device, precision) * len(step_idx[0])
        pack.end_epoch()
        epoch_losses = [s / len(x) for s in loss_sums.tolist()]  # one device sync per epoch
        if epoch + 1 in scored:  # no random draw
            for curve, accuracy in zip(curves, pack.evaluate(test_x, test_y, device, normalize, precision)):
                curve.append([epoch + 1, accuracy])
        bar.set_postfix(loss=f"{sum(epoch_losses) / len(seeds):.3f}")
        if checkpointer.due(epoch + 1, epochs):
            checkpointer.save(epoch + 1, {"seeds": seeds, "mode": mode, "pack": pack.state(),
                                          "rngs": [rng.state() for rng in rngs], "epoch_losses": epoch_losses,
                                          "curves": curves})

    wall = time.perf_counter() - start
    results = []
    for model, seed, epoch_loss, curve in zip(pack.models(), seeds, epoch_losses, curves):
        record = {"final_loss": epoch_loss, "epochs": epochs, "train_images": len(x), "wall_s": wall / len(seeds),
                  "device": str(device), "arch": arch, "seed": seed, "width_factor": width_factor,
                  "augment": augment, "normalize": normalize, "precision": precision, "channels_last": channels_last,
                  "packed": len(seeds), "pack_mode": mode, "pack_wall_s": wall}
        results.append((model.eval(), record | curve_scores(curve)))
    return results


def train_and_evaluate_packed(train_x: torch.Tensor, train_y: torch.Tensor, test_x: torch.Tensor,
                              test_y: torch.Tensor, *, resolution: int | None, seeds: list[int],
                              **settings) -> list[dict]:
    """`validate.train_and_evaluate` for a pack of seeds: resize both splits once, train them all
    (`train_packed`), return one record per seed, in the order of `seeds`."""
    _check_split("test", test_x, test_y, settings["num_classes"])
    if test_x.shape[1:] != train_x.shape[1:]:
        raise ValueError(f"test images {tuple(test_x.shape[1:])} differ from train images "
                         f"{tuple(train_x.shape[1:])}")
    train_x, test_x = resize_for_validation(train_x, resolution), resize_for_validation(test_x, resolution)
    runs = train_packed(train_x, train_y, seeds=seeds, test_x=test_x, test_y=test_y, **settings)
    return [record | {"resolution": train_x.shape[-1]} for _, record in runs]

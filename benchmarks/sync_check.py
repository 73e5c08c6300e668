"""Checks on a CUDA device that the validation training step never waits for the GPU: one epoch of
`validate.train_step` (augmentation, CutMix, forward, backward, SGD, as `train_classifier`) runs under
`torch.cuda.set_sync_debug_mode("error")`, which raises at any host synchronisation. (The epoch's
end syncs once, for the loss log; CutMix draws its scalars on the CPU.)

    python benchmarks/sync_check.py            # exits 0 when no step synchronises
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))  # runs from a checkout, installed or not
from minimaxdd.nets import build_net  # noqa: E402
from minimaxdd.validate import memory_format, train_step  # noqa: E402


def main() -> None:
    if not torch.cuda.is_available():
        sys.exit("sync_check: no CUDA device (the check is about host-device synchronisation)")
    device = torch.device("cuda")
    for channels_last in (False, True):
        torch.manual_seed(0)
        net = build_net("resnetap10", 3, 10, 224, 1.0).to(device, memory_format=memory_format(channels_last))
        opt = torch.optim.SGD(net.parameters(), 0.01, momentum=0.9, weight_decay=5e-4)
        x = torch.randint(0, 256, (256, 3, 224, 224), dtype=torch.uint8, device=device)
        y = torch.randint(10, (256,), device=device)
        order = torch.randperm(len(x)).to(device).split(64)
        loss_sum = torch.zeros((), device=device)
        torch.cuda.synchronize()
        torch.cuda.set_sync_debug_mode("error")
        for idx in order:
            loss_sum += train_step(net, opt, x[idx], y[idx], precision="bf16") * len(idx)
        torch.cuda.set_sync_debug_mode("default")
        print(f"channels_last={channels_last}: {len(order)} steps without a host sync; "
              f"epoch loss {loss_sum.item() / len(x):.3f}")


if __name__ == "__main__":
    main()

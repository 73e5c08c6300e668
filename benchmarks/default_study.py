"""Issue 16: why the embedded default's generator is weak and the minimax terms leave no trace.

Reuses the package's functions directly (no workflow) and caches every trained model under
--root (default /tmp/study16/cache), so experiments compose:

    python benchmarks/default_study.py classifier                       # reference classifier + real features
    python benchmarks/default_study.py vae v4 16,32,32                  # tiny VAE variant (4x4 latents)
    python benchmarks/default_study.py dit v4 d4p1 --patch 1 --steps 2500
    python benchmarks/default_study.py sample d4p1 --guidance 1 4       # accuracy / PRDC / MMD of base samples
    python benchmarks/default_study.py finetune d4p1 mm --rep 0.002 --div 0.008 --ema 0.999
    python benchmarks/default_study.py sample d4p1 --weights mm --guidance 4 --seeds 0 1 2
    python benchmarks/default_study.py grads d4p1                       # term gradients vs diffusion loss
    python benchmarks/default_study.py --smoke --out /tmp/study-smoke   # every command at toy size: a smoke test

Every measurement is appended as one JSON line to <root>/results.jsonl.
Metrics are computed in the feature space of the workflow's feature network (ResNetAP-10, width
1/8, trained on the full training split), which also serves as the real-data classifier.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch

from minimaxdd import analysis, data, sets
from minimaxdd.classifier import evaluate, to_model_input
from minimaxdd.checkpoints import load_dit, save_dit
from minimaxdd.dit import DiT, DiTConfig, mark_difffit_trainable
from minimaxdd.features import embed_images, load_feature_net, train_feature_net
from minimaxdd.generate import generate_set
from minimaxdd.plan import load_config
from minimaxdd.settings import HardLabel, hard_label_rule
from minimaxdd.training import LatentSet, finetune_dit, pretrain_dit
from minimaxdd.vae import encode_images, load_vae, save_vae, to_model_range, to_uint8, train_tiny_vae

DEFAULTS = load_config({"experiment": "study16"})  # the schema's defaults: the demo's digits at 16 px
DATASET = DEFAULTS["dataset"]
# the feature network of the workflow's analyses at the demo's width
PROTOCOL = HardLabel.from_config(DEFAULTS["validate"], **hard_label_rule(10), width_factor=0.125)
DEVICE = torch.device("cpu")


def log(root: Path, record: dict) -> None:
    print(json.dumps(record))
    with open(root / "results.jsonl", "a") as f:
        f.write(json.dumps(record) + "\n")


def splits():
    return data.load_split(DATASET, "train"), data.load_split(DATASET, "test")


def classifier(root: Path, epochs: int = 30):
    path = root / "classifier.pt"
    if not path.exists():
        train, test = splits()
        start = time.time()
        net, record = train_feature_net(PROTOCOL, train.images, train.labels, test.images, test.labels, str(path),
                                        num_classes=10, epochs=epochs, seed=0, device=DEVICE)
        torch.save({"features": embed_images(net, train.images, DEVICE), "labels": train.labels},
                   root / "real_features.pt")
        log(root, {"kind": "classifier", "test_accuracy": record["test_accuracy"], "wall_s": time.time() - start})
    return load_feature_net(str(path), DEVICE), torch.load(root / "real_features.pt")


def svm(root: Path):
    """A pixel-space SVM on the full training split (digits: ~98% on the test split): the accuracy
    judge of generated images, much stronger than the 1/8-width feature network."""
    import pickle
    from sklearn.svm import SVC
    path = root / "svm.pkl"
    if not path.exists():
        train, test = splits()
        model = SVC(gamma="scale").fit(train.images.flatten(1).float().numpy() / 255, train.labels.numpy())
        acc = float((model.predict(test.images.flatten(1).float().numpy() / 255) == test.labels.numpy()).mean())
        log(root, {"kind": "svm", "test_accuracy": acc})
        path.write_bytes(pickle.dumps(model))
    return pickle.loads(path.read_bytes())


def svm_accuracy(root: Path, images: torch.Tensor, labels: torch.Tensor) -> float:
    return float((svm(root).predict(images.flatten(1).float().numpy() / 255) == labels.numpy()).mean())


def within_class_diversity(features: torch.Tensor, labels: torch.Tensor) -> float:
    """Mean pairwise feature distance within a class, averaged over classes."""
    values = []
    for c in labels.unique():
        f = features[labels == c]
        if len(f) > 1:
            d = torch.cdist(f, f)
            values.append(d.sum() / (len(f) * (len(f) - 1)))
    return float(torch.stack(values).mean())


def evaluate_set(root: Path, images: torch.Tensor, labels: torch.Tensor, k: int = 5) -> dict:
    net, real = classifier(root)
    feats = embed_images(net, images, DEVICE)
    with torch.no_grad():
        pred = torch.cat([net(x).argmax(1) for x in _inputs(images)])
    real_f = real["features"]
    sigma = analysis.median_bandwidth(real_f, real_f[:0])
    out = {"svm_acc": svm_accuracy(root, images, labels), "accuracy": float((pred == labels).float().mean()), "mmd": analysis.mmd(real_f, feats, sigma),
           **analysis.prdc(real_f, feats, k), "within_div": within_class_diversity(feats, labels),
           "real_within_div": within_class_diversity(real_f, real["labels"])}
    return {k: round(v, 4) for k, v in out.items()}


def _inputs(images):
    return [to_model_input(b, DEVICE, PROTOCOL.normalize) for b in images.split(256)]


def cmd_classifier(root: Path, args) -> None:
    net, real = classifier(root, args.epochs)
    train, test = splits()
    log(root, {"kind": "real_reference", "set": "random ipc10",
               **evaluate_set(root, *random_subset(train, 10, 0))})
    log(root, {"kind": "real_reference", "set": "random ipc10 seed1",
               **evaluate_set(root, *random_subset(train, 10, 1))})


def random_subset(pack, ipc, seed):
    """The workflow's random real set (rule select_random with select.random_order seeded)."""
    keep = sets.random_subset(pack.labels, ipc, seed)
    return pack.images[keep], pack.labels[keep]


def cmd_vae(root: Path, args) -> None:
    folder = root / f"vae_{args.name}"
    train, test = splits()
    blocks = [int(b) for b in args.blocks.split(",")]
    start = time.time()
    vae = train_tiny_vae(train.images, block_channels=blocks, latent_channels=args.latent_channels, steps=args.steps,
                         batch_size=32, lr=args.lr, kl_weight=args.kl, seed=0, device=DEVICE)
    wall = time.time() - start
    save_vae(vae, folder)
    with torch.no_grad():
        x = to_model_range(test.images)
        recon = vae.decode(vae.encode(x).latent_dist.mean).sample.clamp(-1, 1)
    mse = float(((recon - x) ** 2).mean())
    net, _ = classifier(root)
    acc = evaluate(net, to_uint8(recon), test.labels, DEVICE, PROTOCOL.normalize, PROTOCOL.precision)
    svm_acc = svm_accuracy(root, to_uint8(recon), test.labels)
    cache = encode_images(vae, train.images, 64, DEVICE)
    torch.save(cache | {"labels": train.labels, "class_ids": train.class_ids, "class_names": train.class_names},
               folder / "latents.pt")
    log(root, {"kind": "vae", "name": args.name, "blocks": blocks, "latent_channels": args.latent_channels, "kl": args.kl,
               "steps": args.steps, "latent_shape": list(cache["mean"].shape[2:]), "test_recon_mse": round(mse, 4),
               "featnet_acc_on_recon": round(acc / 100, 4),
               "svm_acc_on_recon": round(svm_acc, 4), "svm_acc_on_test": svm_accuracy(root, test.images, test.labels), "wall_s": round(wall, 1)})


def cmd_dit(root: Path, args) -> None:
    cache = torch.load(root / f"vae_{args.vae}" / "latents.pt")
    channels, size = cache["mean"].shape[2], cache["mean"].shape[-1]
    torch.manual_seed(0)
    model = DiT(DiTConfig(input_size=size, in_channels=channels, num_classes=10, hidden_size=args.hidden,
                          depth=args.depth, num_heads=4, patch_size=args.patch))
    if args.init:  # continue from another base (its EMA weights; the optimizer starts afresh)
        model.load_state_dict(load_dit(root / f"dit_{args.init}", DEVICE).state_dict())
    start = time.time()
    ema = pretrain_dit(model, LatentSet(cache, DEVICE), steps=args.steps, batch_size=64, lr=args.lr,
                       ema_decay=0.995, seed=0, device=DEVICE)
    wall = time.time() - start
    folder = root / f"dit_{args.name}"
    save_dit(ema, folder)
    (folder / "vae.txt").write_text(args.vae)
    log(root, {"kind": "dit", "name": args.name, "vae": args.vae, "patch": args.patch, "hidden": args.hidden,
               "depth": args.depth, "steps": args.steps, "init": args.init, "tokens": (size // args.patch) ** 2, "wall_s": round(wall, 1)})


def load_base(root: Path, name: str):
    folder = root / f"dit_{name}"
    vae_name = (folder / "vae.txt").read_text().strip()
    return load_dit(folder, DEVICE), load_vae(root / f"vae_{vae_name}", DEVICE), vae_name


def cmd_finetune(root: Path, args) -> None:
    model, _, vae_name = load_base(root, args.dit)
    cache = torch.load(root / f"vae_{vae_name}" / "latents.pt")
    forms = ("minimax", "minimax") if args.rep or args.div else ("off", "off")
    start = time.time()
    params, ema, rows = finetune_dit(model, LatentSet(cache, DEVICE), representativeness=forms[0], diversity=forms[1],
                                     batch_size=args.batch_size, epochs=args.epochs, lr=args.lr, ema_decay=args.ema,
                                     seed=args.seed, device=DEVICE, memory_size=64, rep_weight=args.rep,
                                     div_weight=args.div, train_steps=args.train_steps, log=lambda *_: None)
    wall = time.time() - start
    torch.save({"params": params, "ema": ema, "dit": args.dit}, root / f"ft_{args.name}.pt")
    tail = rows[-len(rows) // 4:]
    log(root, {"kind": "finetune", "name": args.name, "dit": args.dit, "rep": args.rep, "div": args.div,
               "ema": args.ema, "epochs": args.epochs, "lr": args.lr, "steps": len(rows), "seed": args.seed,
               "last_quarter": {k: round(float(np.mean([r[k] for r in tail])), 4)
                                for k in ("diffusion", "representativeness", "diversity")},
               "wall_s": round(wall, 1)})


def cmd_sample(root: Path, args) -> None:
    base = args.dit
    weights = None
    if args.weights:
        weights = torch.load(root / f"ft_{args.weights}.pt")
        base = weights["dit"]
    model, vae, _ = load_base(root, base)
    if weights:
        chosen = weights["params" if args.raw else "ema"]
        params = dict(model.named_parameters())
        with torch.no_grad():
            for name, value in chosen.items():
                params[name].copy_(value)
    for g in args.guidance:
        for seed in args.seeds:
            start = time.time()
            images, labels = generate_set(model, vae, class_ids=list(range(10)), ipc=args.ipc, steps=args.steps,
                                          guidance_scale=g, guidance_channels=args.guidance_channels,
                                          precision="fp32", sampler=args.sampler, eta=0.0, batch_size=100, seed=seed,
                                          device=DEVICE)
            wall = time.time() - start
            if args.save:
                torch.save({"images": images, "labels": labels},
                           root / f"samples_{args.weights or base}_g{g}_s{seed}.pt")
            log(root, {"kind": "sample", "dit": base, "weights": args.weights, "raw": args.raw, "guidance": g, "sampler": args.sampler, "steps": args.steps,
                       "seed": seed, "ipc": args.ipc, **evaluate_set(root, images, labels), "wall_s": round(wall, 1)})


def cmd_grads(root: Path, args) -> None:
    """Gradient norms (w.r.t. the Difffit parameters) of the diffusion loss and of the two weighted
    terms, on the same batches, with memories filled by earlier batches; plus the terms' values."""
    from minimaxdd.diffusion import NUM_TIMESTEPS, GaussianDiffusion, linear_betas
    from minimaxdd.minimax import ClassMemory, minimax_terms, update_memories

    model, _, vae_name = load_base(root, args.dit)
    cache = torch.load(root / f"vae_{vae_name}" / "latents.pt")
    latents = LatentSet(cache, DEVICE)
    names = mark_difffit_trainable(model)
    params = [p for n, p in model.named_parameters() if n in names]
    model.train()
    diffusion = GaussianDiffusion(linear_betas(NUM_TIMESTEPS))
    g = torch.Generator().manual_seed(0)
    torch.manual_seed(0)
    real_mem, pred_mem = ClassMemory(64), ClassMemory(64)
    rows = []
    for step in range(args.batches):
        index = torch.randint(len(latents), (args.batch_size,), generator=g)
        x0 = latents.draw(index, g)
        t = torch.randint(NUM_TIMESTEPS, (len(index),), generator=g)
        noise = torch.randn(x0.shape, generator=g)
        labels = latents.labels[index]
        terms = diffusion.training_losses(model, x0, t, latents.model_ids[index], noise)
        rep, div = minimax_terms(terms["pred_x0"], x0, labels, real_mem, pred_mem, update=False)
        if step >= args.warmup:
            def norm(loss):
                grads = torch.autograd.grad(loss, params, retain_graph=True, allow_unused=True)
                return float(torch.sqrt(sum((gr ** 2).sum() for gr in grads if gr is not None)))
            rows.append({"diffusion": norm(terms["loss"].mean()), "rep": norm(rep), "div": norm(div),
                         "rep_value": float(rep), "div_value": float(div)})
        update_memories(real_mem, pred_mem, x0, terms["pred_x0"].detach(), labels)
    mean = {k: float(np.mean([r[k] for r in rows])) for k in rows[0]}
    # cosine between random latents of two images of one class, at this latent size
    flat = latents.mean[:, 0].float().flatten(1)
    same = []
    for c in range(10):
        f = torch.nn.functional.normalize(flat[latents.labels == c][:64], dim=1)
        cos = f @ f.T
        same.append(float(cos[~torch.eye(len(f), dtype=bool)].mean()))
    log(root, {"kind": "grads", "dit": args.dit, "latent_dim": flat.shape[1], "batch_size": args.batch_size,
               **{k: round(v, 5) for k, v in mean.items()},
               "rep_ratio_at_w0.002": round(0.002 * mean["rep"] / mean["diffusion"], 5),
               "div_ratio_at_w0.008": round(0.008 * mean["div"] / mean["diffusion"], 5),
               "mean_within_class_latent_cos": round(float(np.mean(same)), 4)})


# --smoke: every command once, in order, at toy size (a minute on 2 cores; numbers meaningless)
SMOKE = ("classifier --epochs 1", "vae s 8,8 --steps 2", "dit s s --hidden 16 --depth 1 --steps 2",
         "finetune s s --rep 0.002 --div 0.008 --train-steps 2", "sample --weights s --ipc 2 --steps 2",
         "grads s --batches 2 --warmup 1")


def parse_args(argv=None) -> list[argparse.Namespace]:
    """The commands to run: the one given, or with --smoke every command of SMOKE."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--root", "--out", default="/tmp/study16/cache", help="cache and results.jsonl folder")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--smoke", action="store_true", help="run every command at toy size (a smoke test)")
    sub = parser.add_subparsers(dest="cmd")
    p = sub.add_parser("classifier")
    p.add_argument("--epochs", type=int, default=30)
    p = sub.add_parser("vae")
    p.add_argument("name")
    p.add_argument("blocks")
    p.add_argument("--latent-channels", type=int, default=4)
    p.add_argument("--steps", type=int, default=300)
    p.add_argument("--lr", type=float, default=0.002)
    p.add_argument("--kl", type=float, default=1e-6)
    p = sub.add_parser("dit")
    p.add_argument("vae")
    p.add_argument("name")
    p.add_argument("--patch", type=int, default=1)
    p.add_argument("--hidden", type=int, default=96)
    p.add_argument("--depth", type=int, default=4)
    p.add_argument("--steps", type=int, default=2500)
    p.add_argument("--lr", type=float, default=0.001)
    p.add_argument("--init", help="continue from this base DiT")
    p = sub.add_parser("finetune")
    p.add_argument("dit")
    p.add_argument("name")
    p.add_argument("--rep", type=float, default=0.0)
    p.add_argument("--div", type=float, default=0.0)
    p.add_argument("--ema", type=float, default=0.999)
    p.add_argument("--epochs", type=int, default=8)
    p.add_argument("--train-steps", type=int, default=None)
    p.add_argument("--lr", type=float, default=0.001)
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--seed", type=int, default=0)
    p = sub.add_parser("sample")
    p.add_argument("dit", nargs="?")
    p.add_argument("--weights")
    p.add_argument("--raw", action="store_true", help="the fine-tuned weights themselves, not their EMA")
    p.add_argument("--guidance", type=float, nargs="+", default=[4.0])
    p.add_argument("--guidance-channels", type=int, default=3)
    p.add_argument("--seeds", type=int, nargs="+", default=[0])
    p.add_argument("--ipc", type=int, default=10)
    p.add_argument("--steps", type=int, default=50)
    p.add_argument("--save", action="store_true")
    p.add_argument("--sampler", default="ddpm")
    p = sub.add_parser("grads")
    p.add_argument("dit")
    p.add_argument("--batches", type=int, default=40)
    p.add_argument("--warmup", type=int, default=20)
    p.add_argument("--batch-size", type=int, default=8)
    args = parser.parse_args(argv)
    if not (args.cmd or args.smoke):
        parser.error("a command is required (or --smoke)")
    if not args.smoke:
        return [args]
    common = ["--root", args.root, "--threads", str(args.threads)]
    return [parser.parse_args(common + command.split()) for command in SMOKE]


def main(argv=None) -> None:
    for args in parse_args(argv):
        torch.set_num_threads(args.threads)
        root = Path(args.root)
        root.mkdir(parents=True, exist_ok=True)
        globals()[f"cmd_{args.cmd}"](root, args)


if __name__ == "__main__":
    main()

"""Resume after a kill, non-finite losses, data-parallel fine-tuning and atomic writes under SIGKILL."""

import csv
import dataclasses
import json
import os
import signal
import subprocess
import sys
import textwrap
import time

import pytest
import torch
from safetensors.torch import load_file

from minimaxdd import checkpoints, stages
from minimaxdd.dit import DiT
from minimaxdd.io import save_torch
from minimaxdd.resume import Checkpointer, fingerprint
from minimaxdd.training import LatentSet, Trainer, finetune_dit, pretrain_dit

from conftest import SNAKEMAKE, TINY_CONFIG, TINY_DIT, copy_run, snakemake, tiny_dit, write_config

CPU = torch.device("cpu")


def latent_cache(n=24):
    generator = torch.Generator().manual_seed(1)
    return {"mean": torch.randn(n, 2, 2, 4, 4, generator=generator).half(),
            "std": torch.full((n, 2, 2, 4, 4), 0.1).half(), "scaling_factor": 1.0,
            "labels": torch.arange(n) % 3, "class_ids": [0, 1, 2]}


FINETUNE = dict(representativeness="minimax", diversity="minimax", batch_size=4, epochs=3, lr=1e-2, ema_decay=0.9,
                memory_size=4, rep_weight=0.002, div_weight=0.008, seed=0, device=CPU, log=lambda _: None)


def stop_after(monkeypatch, calls, error=KeyboardInterrupt):
    """Make Trainer.step raise `error` on call number `calls` + 1, as a kill would stop the job."""
    real_step, count = Trainer.step, {"n": 0}

    def step(self, *args):
        count["n"] += 1
        if count["n"] > calls:
            raise error("stopped" if error is KeyboardInterrupt else "non-finite training loss")
        return real_step(self, *args)

    monkeypatch.setattr(Trainer, "step", step)


def test_finetune_resumed_after_a_kill_equals_an_uninterrupted_run(tmp_path, monkeypatch):
    params, ema, rows = finetune_dit(tiny_dit(), LatentSet(latent_cache(), CPU), **FINETUNE)

    checkpointer = Checkpointer(tmp_path / "resume.pt", every=4, fingerprint="job")
    with monkeypatch.context() as patch:
        stop_after(patch, 10)  # mid-epoch (6 steps per epoch), two steps after the checkpoint at step 8
        with pytest.raises(KeyboardInterrupt):
            finetune_dit(tiny_dit(), LatentSet(latent_cache(), CPU), checkpointer=checkpointer, **FINETUNE)
    assert torch.load(tmp_path / "resume.pt", weights_only=False)["step"] == 8
    resumed = finetune_dit(tiny_dit(), LatentSet(latent_cache(), CPU), checkpointer=checkpointer, **FINETUNE)

    assert resumed[2] == rows
    for name in params:
        assert torch.equal(resumed[0][name], params[name]) and torch.equal(resumed[1][name], ema[name])


def test_a_checkpoint_of_other_settings_is_ignored(tmp_path, monkeypatch):
    with monkeypatch.context() as patch:
        stop_after(patch, 5)
        with pytest.raises(KeyboardInterrupt):
            finetune_dit(tiny_dit(), LatentSet(latent_cache(), CPU), checkpointer=Checkpointer(
                tmp_path / "resume.pt", every=4, fingerprint="lr 0.01"), **FINETUNE)
    messages = []
    other = Checkpointer(tmp_path / "resume.pt", every=4, fingerprint="lr 0.02", log=messages.append)
    assert other.load() is None and "other settings" in messages[0]

    inputs = tmp_path / "latents.pt"
    inputs.write_text("a")
    before = fingerprint({"lr": 0.01}, [inputs])
    os.utime(inputs, ns=(0, 0))  # a rebuilt input file
    assert fingerprint({"lr": 0.01}, [inputs]) != before


def test_base_dit_training_resumes(tmp_path, monkeypatch):
    settings = dict(steps=7, batch_size=4, lr=1e-3, ema_decay=0.9, seed=0, device=CPU)

    def fresh():
        torch.manual_seed(0)
        return DiT(TINY_DIT)

    expected = pretrain_dit(fresh(), LatentSet(latent_cache(), CPU), **settings).state_dict()
    checkpointer = Checkpointer(tmp_path / "resume.pt", every=3, fingerprint="job")
    with monkeypatch.context() as patch:
        stop_after(patch, 4)
        with pytest.raises(KeyboardInterrupt):
            pretrain_dit(fresh(), LatentSet(latent_cache(), CPU), checkpointer=checkpointer, **settings)
    resumed = pretrain_dit(fresh(), LatentSet(latent_cache(), CPU), checkpointer=checkpointer, **settings)
    assert all(torch.equal(v, expected[k]) for k, v in resumed.state_dict().items())


def test_non_finite_loss_names_the_step_and_keeps_the_last_good_checkpoint(tmp_path, monkeypatch):
    checkpointer = Checkpointer(tmp_path / "resume.pt", every=2, fingerprint="job")
    stop_after(monkeypatch, 5, error=FloatingPointError)
    with pytest.raises(FloatingPointError, match=r"at step 6; the last good checkpoint \(step 4\) is kept at .*resume.pt"):
        finetune_dit(tiny_dit(), LatentSet(latent_cache(), CPU), checkpointer=checkpointer, **FINETUNE)
    assert torch.load(tmp_path / "resume.pt", weights_only=False)["step"] == 4


def test_nan_latents_stop_fine_tuning_at_the_first_step():
    cache = latent_cache()
    cache["mean"][:] = float("nan")
    with pytest.raises(FloatingPointError, match="non-finite training loss .* at step 1; no checkpoint"):
        finetune_dit(tiny_dit(), LatentSet(cache, CPU), **FINETUNE)


def write_finetune_inputs(folder, label_dropout=True):
    save_torch(latent_cache(), folder / "latents.pt")
    config = TINY_DIT if label_dropout else dataclasses.replace(TINY_DIT, class_dropout_prob=0.0)
    checkpoints.save_dit(tiny_dit(config=config), folder / "dit")


def run_finetune_stage(folder, name, gpus, forms=("minimax", "minimax")):
    settings = {k: v for k, v in FINETUNE.items() if k not in ("device", "log")}
    settings |= {"representativeness": forms[0], "diversity": forms[1], "gpus": gpus}
    out = folder / name
    stages.finetune(latents=[str(folder / "latents.pt")], dit=str(folder / "dit"),
                    weights=str(out / "weights.safetensors"), losses=str(out / "losses.csv"), method="minimax",
                    classes=None, finetune=settings, dit_num_heads=None, device="cpu", checkpoint_every_steps=4,
                    compile=False)
    with open(out / "losses.csv") as f:
        return load_file(out / "weights.safetensors"), list(csv.DictReader(f))


def test_a_fine_tuned_model_with_a_non_finite_weight_stops_its_job_naming_the_file(tmp_path, monkeypatch):
    from minimaxdd import stages
    from minimaxdd.degenerate import DegenerateResult

    def overflowing(*args, **kwargs):
        model_params, ema_params, rows = real_finetune_dit(*args, **kwargs)
        next(iter(ema_params.values()))[0] = float("inf")
        return model_params, ema_params, rows

    real_finetune_dit = stages.finetune_dit
    monkeypatch.setattr(stages, "finetune_dit", overflowing)
    write_finetune_inputs(tmp_path)
    with pytest.raises(DegenerateResult, match=r"one/weights\.safetensors \(fine-tuned as minimax with .*\): "
                                               r"non-finite weights in ema\."):
        run_finetune_stage(tmp_path, "one", gpus=1)
    assert not (tmp_path / "one" / "weights.safetensors").exists()


def test_data_parallel_fine_tuning_on_two_gloo_processes(tmp_path):
    write_finetune_inputs(tmp_path)
    weights, rows = run_finetune_stage(tmp_path, "ddp", gpus=2)
    assert len(rows) == 18 and all(torch.isfinite(torch.tensor(float(r["total"]))) for r in rows)
    assert float(rows[-1]["diversity"]) > 0  # the shared memories were filled
    model = checkpoints.apply_difffit(checkpoints.load_dit(tmp_path / "dit"), tmp_path / "ddp/weights.safetensors")
    assert torch.isfinite(model(torch.randn(2, 2, 4, 4), torch.tensor([5, 500]), torch.tensor([0, 1]))).all()
    assert not (tmp_path / "ddp/weights.safetensors.resume.pt").exists()  # removed once the weights are written

    # Without the criteria and the label dropout (each rank draws its own mask), the split batch is
    # the same optimisation as one process, up to the order of reductions.
    write_finetune_inputs(tmp_path, label_dropout=False)
    single, single_rows = run_finetune_stage(tmp_path, "one", gpus=1, forms=("off", "off"))
    double, double_rows = run_finetune_stage(tmp_path, "two", gpus=2, forms=("off", "off"))
    assert float(double_rows[0]["diffusion"]) == pytest.approx(float(single_rows[0]["diffusion"]), rel=1e-5)
    losses = [[float(r["diffusion"]) for r in rows] for rows in (single_rows, double_rows)]
    assert losses[1] == pytest.approx(losses[0], rel=1e-3)
    for name, value in single.items():  # Adam amplifies float noise in near-zero gradients a little
        torch.testing.assert_close(double[name], value, rtol=1e-2, atol=1e-3)


WRITER = textwrap.dedent("""
    import sys, time
    from minimaxdd.io import atomic_path
    with atomic_path(sys.argv[1]) as tmp, open(tmp, "w") as f:
        for _ in range(1000):
            f.write("x" * 1000)
            f.flush()
            time.sleep(0.01)
""")


def test_a_writer_killed_mid_write_leaves_the_earlier_file_and_no_complete_looking_file(tmp_path):
    target = tmp_path / "table.csv"
    target.write_text("earlier result\n")
    writer = subprocess.Popen([sys.executable, "-c", WRITER, str(target)])
    deadline = time.time() + 60
    while not any(p.name.startswith(".table.csv.") and p.stat().st_size > 0 for p in tmp_path.iterdir()):
        assert time.time() < deadline and writer.poll() is None
        time.sleep(0.02)
    writer.send_signal(signal.SIGKILL)
    writer.wait()
    assert target.read_text() == "earlier result\n"
    assert [p.name for p in tmp_path.iterdir() if not p.name.startswith(".")] == ["table.csv"]


# -- the workflow, killed and rerun -----------------------------------------------------------------

def killed_config():
    """The tiny config with a fine-tuning long enough (~350 steps) to be killed in the middle."""

    return TINY_CONFIG | {"methods": ["minimax"], "ipcs": [2], "studies": [], "expansion": {"methods": []},
                   "finetune": TINY_CONFIG["finetune"] | {"batch_size": 32, "epochs": 8},
                   "validate": TINY_CONFIG["validate"] | {"archs": ["convnet"]}, "checkpoint": {"every_steps": 50}}


EXP = "results/tiny"


@pytest.fixture(scope="module")
def straight_and_killed(tiny_run, tmp_path_factory):
    """The same config run twice from the tiny run's data and base models (its fine-tuning, sets and
    validations differ), the second one SIGKILLed (the whole workflow) in the middle of fine-tuning
    and then rerun."""

    straight, killed = (copy_run(tiny_run, tmp_path_factory.mktemp(name)) for name in ("straight", "killed"))
    targets = [f"{EXP}/validate/minimax/ipc2/convnet/seed0.json"]
    for workdir in (straight, killed):
        write_config(workdir, killed_config())
    snakemake(straight, *targets)

    checkpoint = killed / EXP / "finetune/minimax/phase0/weights.safetensors.resume.pt"
    run = subprocess.Popen([*SNAKEMAKE, "--directory", str(killed), "--cores", "2", *targets], start_new_session=True,
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 300
    while not checkpoint.exists():
        assert run.poll() is None and time.time() < deadline, "fine-tuning ended before it could be killed"
        time.sleep(0.05)
    os.killpg(run.pid, signal.SIGKILL)
    run.wait()
    assert not (killed / EXP / "finetune/minimax/phase0/weights.safetensors").exists()

    snakemake(killed, "--unlock")
    snakemake(killed, *targets)
    return straight, killed


def test_workflow_killed_during_fine_tuning_resumes_to_the_same_weights(straight_and_killed):
    straight, killed = straight_and_killed
    log = (killed / EXP / "logs/finetune_minimax_phase0.log").read_text()
    assert "resuming from checkpoint" in log
    assert not (killed / EXP / "finetune/minimax/phase0/weights.safetensors.resume.pt").exists()
    weights = [load_file(w / EXP / "finetune/minimax/phase0/weights.safetensors") for w in (straight, killed)]
    assert weights[0].keys() == weights[1].keys()
    assert all(torch.equal(weights[0][k], weights[1][k]) for k in weights[0])


def test_two_runs_give_byte_identical_images_and_identical_accuracies(straight_and_killed):
    images = [sorted((w / EXP / "sets/minimax/ipc2/images").rglob("*.png")) for w in straight_and_killed]
    assert images[0] and [p.relative_to(straight_and_killed[0]) for p in images[0]] == \
        [p.relative_to(straight_and_killed[1]) for p in images[1]]
    assert [p.read_bytes() for p in images[0]] == [p.read_bytes() for p in images[1]]
    records = [json.loads((w / EXP / "validate/minimax/ipc2/convnet/seed0.json").read_text())
               for w in straight_and_killed]
    assert records[0]["curve"] == records[1]["curve"]

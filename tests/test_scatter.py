"""Independent work is independent jobs: the job count of a dry run grows with the grid, and a set
generated in class chunks (`generate.classes_per_job`) is the set one job generates."""

import copy
import json
import re
from pathlib import Path

import pytest
import torch

from minimaxdd import checkpoints, data, stages
from minimaxdd.dit import DiTConfig, mark_difffit_trainable
from minimaxdd.vae import build_tiny_vae, save_vae
from conftest import TINY_CONFIG, snakemake, tiny_dit, write_config

# -- one set generated in chunks is the set generated in one job ---------------------------------------

CLASSES = 5
PHASES = [[0, 1, 2], [3, 4]]  # finetune.classes_per_phase = 3
SETTINGS = {"steps": 3, "guidance_scale": 2.0, "guidance_channels": 3, "precision": "fp32", "sampler": "ddpm",
            "eta": 0.0, "batch_size": 3, "seed": 7}  # batches straddle classes


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    """A tiny random-weight DiT and VAE on disk, a Difffit delta per phase and a train pack."""
    root = tmp_path_factory.mktemp("models")
    dit = tiny_dit(config=DiTConfig(input_size=4, patch_size=2, in_channels=2, hidden_size=16, depth=2,
                                    num_heads=2, num_classes=CLASSES + 2))
    checkpoints.save_dit(dit, root / "dit")
    save_vae(build_tiny_vae(channels=1, resolution=8, block_channels=[8, 8], latent_channels=2), root / "vae")
    names = mark_difffit_trainable(dit)
    deltas = []
    for phase in range(len(PHASES)):
        delta = {n: p.detach() + 0.3 * torch.randn_like(p) for n, p in dit.named_parameters() if n in names}
        ema = {n: v.clone() for n, v in delta.items()}
        checkpoints.save_difffit(delta, ema, root / f"phase{phase}.safetensors", {"method": "test"})
        deltas.append(str(root / f"phase{phase}.safetensors"))
    labels = torch.arange(CLASSES).repeat_interleave(2)
    data.RealPack(torch.zeros(len(labels), 1, 8, 8, dtype=torch.uint8), labels,
                  [f"class{c}" for c in range(CLASSES)], [2, 0, 6, 1, 3]).save(root / "train.pt")
    return root, deltas


def generate(models, out: Path, *, weights, phases, classes=None, images=True):
    root, _ = models
    out.mkdir(parents=True, exist_ok=True)
    stages.generate(dit=str(root / "dit"), vae=str(root / "vae"), train=str(root / "train.pt"), weights=weights,
                    guide_inputs=[], pack=str(out / "pack.pt"), timing=str(out / "generation.json"), ipc=2, phases=phases,
                    generate=SETTINGS, dit_num_heads=None, device="cpu", compile=False,
                    images=str(out / "images") if images else None, classes=classes)
    return out


def chunked(models, out: Path, chunks, *, weights, phases):
    """What the workflow runs: one job per chunk, given only the phases holding its classes, then the gather."""
    packs, timings = [], []
    for chunk in chunks:
        held = [i for i, phase in enumerate(phases) if phase is None or set(phase) & set(chunk)]
        job = generate(models, out / "chunks" / f"{chunk[0]}-{chunk[-1]}", classes=chunk, images=False,
                       weights=[weights[i] for i in held if weights], phases=[phases[i] for i in held])
        assert not (job / "images").exists()
        packs.append(str(job / "pack.pt"))
        timings.append(str(job / "generation.json"))
    stages.gather_generated(packs=packs, timings=timings, pack=str(out / "pack.pt"), images=str(out / "images"),
                            timing=str(out / "generation.json"))
    return out, timings


def assert_same_set(one: Path, gathered: Path):
    a, b = data.RealPack.load(one / "pack.pt"), data.RealPack.load(gathered / "pack.pt")
    assert torch.equal(a.images, b.images) and torch.equal(a.labels, b.labels)
    assert (a.class_names, a.class_ids) == (b.class_names, b.class_ids)
    files = sorted(p.relative_to(one / "images") for p in (one / "images").rglob("*.png"))
    assert files == sorted(p.relative_to(gathered / "images") for p in (gathered / "images").rglob("*.png"))
    assert len(files) == CLASSES * 2
    for name in files:
        assert (one / "images" / name).read_bytes() == (gathered / "images" / name).read_bytes()


@pytest.fixture(scope="module")
def one_job(models, tmp_path_factory):
    """The set one job generates with the per-phase deltas (read only by the tests)."""
    return generate(models, tmp_path_factory.mktemp("one"), weights=models[1], phases=PHASES)


@pytest.mark.parametrize("chunks", [[[0, 1], [2, 3], [4]], [[0, 1, 2, 3, 4]], [[0], [1], [2], [3], [4]]])
def test_chunked_generation_with_phases_equals_one_job(models, one_job, tmp_path, chunks):
    _, deltas = models
    one = one_job
    gathered, timings = chunked(models, tmp_path / "gathered", chunks, weights=deltas, phases=PHASES)
    assert_same_set(one, gathered)

    record = json.loads((gathered / "generation.json").read_text())
    single = json.loads((one / "generation.json").read_text())
    parts = [json.loads(Path(t).read_text()) for t in timings]
    assert record["images"] == single["images"] == CLASSES * 2
    assert record["wall_s"] == pytest.approx(sum(p["wall_s"] for p in parts))
    assert record["seconds_per_image"] == pytest.approx(record["wall_s"] / record["images"])
    assert [c["classes"] for c in record["chunks"]] == chunks
    assert set(single) - {"chunks"} <= set(record)
    assert {k: record[k] for k in (*SETTINGS, "device")} == {k: single[k] for k in (*SETTINGS, "device")}


def test_each_phase_delta_applies_to_its_classes_in_a_chunk(models, tmp_path):
    """Chunk 2-3 spans both phases: class 3 is phase 1's, so it matches phase 1's delta alone, not phase 0's."""
    _, deltas = models
    gathered, _ = chunked(models, tmp_path / "gathered", [[2, 3]], weights=deltas, phases=PHASES)
    span = data.RealPack.load(gathered / "pack.pt")
    by_phase = [data.RealPack.load(generate(models, tmp_path / f"p{i}", weights=[deltas[i]], phases=[None],
                                            classes=[3], images=False) / "pack.pt") for i in range(2)]
    assert torch.equal(span.by_class(3), by_phase[1].images)
    assert not torch.equal(span.by_class(3), by_phase[0].images)


def test_chunked_base_dit_equals_one_job(models, tmp_path):
    one = generate(models, tmp_path / "one", weights=[], phases=[None])
    gathered, _ = chunked(models, tmp_path / "gathered", [[0, 1, 2], [3, 4]], weights=[], phases=[None])
    assert_same_set(one, gathered)
    assert "chunks" not in json.loads((one / "generation.json").read_text())


# -- dry runs: the job count grows with the grid ---------------------------------------------------

# TINY_CONFIG without the study and the expansion, so that every count is a product of the grid's sizes
GRID = dict(copy.deepcopy(TINY_CONFIG), studies=[], expansion={"methods": [], "ipcs": []})
SMALL = dict(GRID, methods=["random", "dit", "minimax"], ipcs=[1],
             validate=dict(GRID["validate"], archs=["convnet"], seeds=[0]))
LARGE = dict(GRID, methods=["random", "herding", "dit", "difffit", "minimax", "full"], ipcs=[1, 2, 3],
             validate=dict(GRID["validate"], archs=["convnet", "resnetap10"], seeds=[0, 1, 2]))


def dry_run(workdir: Path, config: dict) -> str:
    write_config(workdir, config)
    return snakemake(workdir, "--dry-run").stdout


def job_counts(out: str) -> dict[str, int]:
    """Jobs per rule of a dry run, from its job stats table."""
    table = out.split("Job stats:", 1)[1].split("total", 1)[0]
    return {rule: int(n) for rule, n in re.findall(r"^(\w+)\s+(\d+)$", table, flags=re.MULTILINE)}


def expected(config: dict, chunks: int | None = None, phases: int = 1) -> dict[str, int]:
    methods, ipcs = config["methods"], len(config["ipcs"])
    archs, seeds = len(config["validate"]["archs"]), len(config["validate"]["seeds"])
    subset = [m for m in methods if m != "full"]
    generated = [m for m in methods if m in ("dit", "difffit", "minimax")]
    counts = {
        "validate": len(subset) * ipcs * archs * seeds,
        "validate_full": archs * seeds if "full" in methods else 0,
        "generate": 0 if chunks else len(generated) * ipcs,
        "generate_chunk": len(generated) * ipcs * (chunks or 0),
        "gather_generated": len(generated) * ipcs if chunks else 0,
        "finetune": len([m for m in generated if m != "dit"]) * phases,
        "select_random": ipcs if "random" in methods else 0,
        "select_coreset": ipcs * len([m for m in methods if m in ("herding", "kcenter")]),
        "analyze": len(subset) * ipcs,
    }
    return {rule: n for rule, n in counts.items() if n}


def assert_counts(counts: dict[str, int], want: dict[str, int]):
    got = {rule: counts.get(rule, 0) for rule in ("validate", "validate_full", "generate", "generate_chunk",
                                                  "gather_generated", "finetune", "select_random", "select_coreset",
                                                  "analyze")}
    assert {r: n for r, n in got.items() if n} == want


def test_job_count_grows_with_the_grid(tmp_path):
    small, large = job_counts(dry_run(tmp_path / "small", SMALL)), job_counts(dry_run(tmp_path / "large", LARGE))
    assert_counts(small, expected(SMALL))
    assert_counts(large, expected(LARGE))
    assert small["validate"] == 3 * 1 * 1 * 1 and large["validate"] == 5 * 3 * 2 * 3
    assert small["generate"] == 2 * 1 and large["generate"] == 3 * 3
    assert "gather_generated" not in large


@pytest.mark.parametrize("per_job, chunks", [(3, 4), (10, 1), (1, 10)])
def test_generation_scatters_by_class_chunk(tmp_path, per_job, chunks):
    config = dict(LARGE, generate=dict(LARGE["generate"], classes_per_job=per_job))
    counts = job_counts(dry_run(tmp_path, config))
    assert_counts(counts, expected(LARGE, chunks=chunks))
    assert counts["generate_chunk"] == 3 * 3 * chunks and counts["gather_generated"] == 3 * 3
    assert "generate" not in counts


def test_chunks_wait_only_for_their_phases(tmp_path):
    """Fine-tuned in phases of 4 classes and generated in chunks of 3: each chunk needs only the
    fine-tuned models of the phases holding its classes."""
    config = dict(SMALL, generate=dict(SMALL["generate"], classes_per_job=3),
                  finetune=dict(SMALL["finetune"], classes_per_phase=4))
    out = dry_run(tmp_path, config)
    assert_counts(job_counts(out), expected(SMALL, chunks=4, phases=3))
    jobs = re.findall(r"^rule generate_chunk:\n    input: (.+)\n    output: .+/sets/minimax/ipc1/chunks/(\d+-\d+)\.pt",
                      out, flags=re.MULTILINE)
    phases = {chunk: sorted(re.findall(r"phase(\d+)/weights", inputs)) for inputs, chunk in jobs}
    assert phases == {"0-2": ["0"], "3-5": ["0", "1"], "6-8": ["1", "2"], "9-9": ["2"]}


def test_every_rule_is_defined_whatever_the_config(tmp_path):
    """Profiles name a fixed set of rules: the config chooses among them (ruleorder), never defines them."""
    def rules(config):
        write_config(tmp_path, config)
        return snakemake(tmp_path, "--list-rules", cores=None).stdout.split()

    plain = rules(SMALL)
    assert {"generate", "generate_chunk", "gather_generated", "validate", "validate_group"} <= set(plain)
    assert rules(dict(SMALL, generate=dict(SMALL["generate"], classes_per_job=3),
                      validate=dict(SMALL["validate"], group_seeds=True))) == plain


def test_a_fine_tuning_phase_reads_only_the_latents_of_its_classes(tmp_path):
    config = dict(SMALL, encode={"classes_per_job": 4}, finetune=dict(SMALL["finetune"], classes_per_phase=5))
    out = dry_run(tmp_path, config)
    assert job_counts(out)["encode"] == 3  # classes 0-3, 4-7, 8-9
    jobs = re.findall(r"^rule finetune:\n    input: (.+)\n    output: .+/finetune/minimax/phase(\d)/", out, flags=re.MULTILINE)
    latents = {phase: sorted(re.findall(r"latents/train/([\d-]+)\.pt", inputs)) for inputs, phase in jobs}
    assert latents == {"0": ["0-3", "4-7"], "1": ["4-7", "8-9"]}


def test_a_set_with_an_image_of_one_value_stops_its_job_naming_the_set_and_its_settings(models, tmp_path, monkeypatch):
    """What IGD at influence_scale 1e30 did (all-black images, exit 0): now the job fails, writing nothing."""
    from minimaxdd import generate as generation
    from minimaxdd.degenerate import DegenerateResult

    def blackened(*args, **kwargs):
        images, labels = real_generate_set(*args, **kwargs)
        images[3] = 0
        return images, labels

    real_generate_set = generation.generate_set
    monkeypatch.setattr(generation, "generate_set", blackened)
    out = tmp_path / "set"
    with pytest.raises(DegenerateResult, match=r"set/pack\.pt \(generated with \{'steps': 3, 'guidance_scale': 2\.0.*"
                                               r"1 of 10 generated images are of one value \(first: image 1 of class class1"):
        generate(models, out, weights=[], phases=[None])
    assert not (out / "pack.pt").exists() and not (out / "images").exists()

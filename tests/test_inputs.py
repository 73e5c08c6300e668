"""Bad or changed inputs that used to get through (issue 21): the same split for training and
testing, a broken class link, a key given twice, CUDA asked of a CPU-only torch, a damaged artifact
of each kind, and a changed dataset under the same experiment."""

import os

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import save_file

from minimaxdd import checks, data, io, plan
from minimaxdd.checks import ConfigError

from conftest import make_tree


def config_for(root, **dataset) -> dict:
    return plan.load_config({"experiment": "x", "methods": ["random"], "ipcs": [1],
                             "dataset": {"kind": "imagefolder", "root": str(root), "resolution": 8, **dataset}})


def test_the_same_folder_for_training_and_testing_stops(tmp_path):
    root = make_tree(tmp_path / "tree")
    (root / "same").symlink_to(root / "train")  # another name for the same folder
    for test_dir, classes in (("train", None), ("./train", None), ("same", None), ("same", ["cat", "dog"])):
        with pytest.raises(ConfigError, match=rf"^dataset\.test_dir: '{test_dir}' \(.*\) is also dataset\.train_dir"):
            checks.check(config_for(root, test_dir=test_dir, classes=classes))


def test_tiny_model_widths_that_their_layers_cannot_split_stop_at_start():
    config = plan.load_config({"experiment": "x", "methods": ["random"], "ipcs": [1], "dataset": {"kind": "digits"},
                               "base_models": {"tiny_vae": {"block_channels": [16, 24]}}})
    with pytest.raises(ConfigError, match=r"^base_models\.tiny_vae\.block_channels \[16, 24\]: every width must "
                                          r"be divisible by 16"):
        checks.check(config)
    with pytest.raises(ConfigError, match=r"^base_models\.tiny_dit\.hidden_size: 10 is not a multiple of 4"):
        plan.load_config({"experiment": "x", "base_models": {"tiny_dit": {"hidden_size": 10}}})


def test_the_folder_listing_is_read_again_when_a_class_folder_changes(tmp_path):
    root = make_tree(tmp_path / "tree", train=3)
    dataset = config_for(root)["dataset"]
    old = os.stat(root / "train" / "cat").st_mtime_ns - 5_000_000_000
    os.utime(root / "train" / "cat", ns=(old, old))  # listed long after its last change: the listing is kept
    assert data.class_image_counts(dataset) == {"cat": 3, "dog": 3}
    kept = data._listings[root / "train" / "cat"]
    assert data.class_image_counts(dataset) == {"cat": 3, "dog": 3} and data._listings[root / "train" / "cat"] is kept
    Image.new("RGB", (12, 12)).save(root / "train" / "cat" / "new.png")  # moves the folder's time
    assert data.class_image_counts(dataset) == {"cat": 4, "dog": 3}
    assert root / "train" / "dog" not in data._listings  # made by make_tree within the second
    (root / "train" / "dog" / "extra.png").write_bytes((root / "train" / "cat" / "new.png").read_bytes())
    assert data.class_image_counts(dataset) == {"cat": 4, "dog": 4}


def test_a_broken_class_link_is_named(tmp_path):
    root = make_tree(tmp_path / "tree")
    (root / "train" / "bird").symlink_to(tmp_path / "nowhere")
    with pytest.raises(data.DatasetError, match=r"^dataset\.train_dir: class folder .*train/bird is a broken or looping"):
        data.resolve_classes(config_for(root)["dataset"])


def test_a_key_given_twice_in_a_config_file_stops(tmp_path):
    file = tmp_path / "mine.yaml"
    file.write_text("experiment: a\ndataset: {kind: digits}\nipcs: [1]\nexperiment: b\n")
    with pytest.raises(ConfigError, match=rf"^experiment: given twice in {file}, line 4"):
        plan.read_config({"experiment": "b"}, [file])
    file.write_text("experiment: a\nvalidate:\n  epochs: {1: 2}\n  seeds: [0]\n  epochs: {1: 3}\n")
    with pytest.raises(ConfigError, match=r"^epochs: given twice in .*line 5"):
        plan.read_config({}, [file])


@pytest.mark.skipif(torch.cuda.is_available(), reason="a CUDA device is present")
def test_cuda_asked_of_a_cpu_only_torch_stops_at_start():
    config = plan.load_config({"experiment": "x", "device": "cuda"})
    with pytest.raises(ConfigError, match=r"^device: cuda, but this torch .* sees no CUDA device"):
        checks.check(config)


def write_each_kind(folder):
    """A good artifact of each kind the workflow reads."""
    io.save_torch({"x": torch.zeros(100)}, folder / "pack.pt")
    np.save(folder / "0.npy", np.zeros((4, 3, 8, 8), dtype=np.uint8))
    save_file({"w": torch.zeros(100)}, str(folder / "weights.safetensors"))
    io.save_json({"accuracy_best": 50.0, "curve": [[1, 50.0]]}, folder / "seed0.json")
    return [folder / name for name in ("pack.pt", "0.npy", "weights.safetensors", "seed0.json")]


@pytest.mark.parametrize("kind", ["pack.pt", "0.npy", "weights.safetensors", "seed0.json"])
def test_a_truncated_artifact_of_each_kind_is_found_and_only_it(tmp_path, kind):
    files = write_each_kind(tmp_path)
    assert io.damaged_artifacts(tmp_path) == []
    cut = tmp_path / kind
    cut.write_bytes(cut.read_bytes()[:-7])
    assert io.damaged_artifacts(tmp_path) == [cut]
    assert all(f.exists() for f in files)


def test_a_changed_dataset_changes_the_prepare_rules_trigger(tmp_path):
    root = make_tree(tmp_path / "tree")
    fingerprint = lambda: data.source_fingerprint(config_for(root)["dataset"])
    first = fingerprint()
    assert fingerprint() == first  # nothing changed: nothing reruns
    image = root / "train" / "cat" / "0.png"
    Image.new("RGB", (12, 12), (9, 9, 9)).save(image)
    os.utime(image, ns=(1, 1))  # another content with another modification time
    replaced = fingerprint()
    Image.new("RGB", (12, 12)).save(root / "train" / "cat" / "9.png")
    added = fingerprint()
    make_tree(root, classes=("cow",))
    with_class = fingerprint()
    assert len({first, replaced, added, with_class}) == 4


@pytest.mark.slow
def test_the_readme_recovery_recipe_works_after_snakemake_itself_is_killed(tmp_path):
    """Snakemake killed while a job runs on (a lost login session): the job finishes its output,
    which stays marked incomplete. Without the workflow profile that is an IncompleteFilesException;
    the README's recipe (`--unlock`, then the same command) reruns the job."""
    import signal
    import subprocess
    import time

    from conftest import SNAKEMAKE, TINY_CONFIG, snakemake, write_config

    config = {**TINY_CONFIG, "base_models": {**TINY_CONFIG["base_models"],
                                             "tiny_vae": {**TINY_CONFIG["base_models"]["tiny_vae"], "steps": 60}}}
    write_config(tmp_path, config)
    vae, log = tmp_path / "results/tiny/base/vae", tmp_path / "results/tiny/logs/base_vae.log"
    run = subprocess.Popen([*SNAKEMAKE, "--directory", str(tmp_path), "--cores", "2", str(vae.relative_to(tmp_path))],
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 300
    while not log.exists():
        assert run.poll() is None and time.time() < deadline, "the VAE job ended before Snakemake could be killed"
        time.sleep(0.05)
    run.send_signal(signal.SIGKILL)  # Snakemake only: its job runs on
    run.wait()
    while not (vae / "config.json").exists():
        assert time.time() < deadline, "the orphaned VAE job did not finish"
        time.sleep(0.2)
    time.sleep(2)  # the job's process exits after its rename

    stuck = snakemake(tmp_path, "--workflow-profile", "none", str(vae.relative_to(tmp_path)), check=False)
    assert stuck.returncode != 0 and "IncompleteFilesException" in stuck.stdout + stuck.stderr
    assert (vae / "config.json").exists()  # nothing deleted

    snakemake(tmp_path, "--unlock")
    result = snakemake(tmp_path, str(vae.relative_to(tmp_path)))
    assert "Using workflow specific profile profiles/default" in result.stdout + result.stderr
    assert "rule base_vae" in result.stdout + result.stderr  # rerun, not trusted
    assert (vae / "config.json").exists()


def test_a_resolution_whose_shards_cannot_fit_stops_at_start_naming_it(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    config = plan.load_config({"experiment": "x", "methods": ["random"], "ipcs": [1],
                               "dataset": {"kind": "digits", "resolution": 100000}})
    with pytest.raises(ConfigError, match=r"^experiment: .* data shards \(\d+.*GB at dataset\.resolution 100000\)"):
        plan.check(config)


def test_results_as_a_file_is_named_and_a_linked_experiment_folder_is_fine(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "results").write_text("not a folder")
    with pytest.raises(ConfigError, match=r"^experiment: results is a file, not a folder"):
        plan.load_config({"experiment": "x"})
    (tmp_path / "results").unlink()
    (tmp_path / "elsewhere").mkdir()
    (tmp_path / "results").mkdir()
    (tmp_path / "results" / "x").symlink_to(tmp_path / "elsewhere")  # results on another disk
    assert plan.load_config({"experiment": "x"})["experiment"] == "x"


def test_analysis_k_above_the_smallest_set_stops_at_start(tmp_path):
    root = make_tree(tmp_path / "tree", classes=("cat", "dog", "cow"))
    config = config_for(root)
    config["analysis"]["k"] = 3  # IPC 1 x 3 classes: 3 images, and k needs more than k
    with pytest.raises(ConfigError, match=r"^analysis\.k: 3 nearest neighbours need more than 3 images in a set, "
                                          r"and the IPC 1 sets of 3 classes hold 3"):
        checks.check(config)
    config["analysis"]["k"] = 2
    checks.check(config)


def test_a_one_class_dataset_stops_at_start(tmp_path):
    """One class: every accuracy would be 100 and every score nan, written as results."""
    root = make_tree(tmp_path / "tree", classes=("cat",))
    with pytest.raises(ConfigError, match=r"^dataset\.root: the dataset has one class \('cat'\); a classifier needs"):
        checks.check(config_for(root))
    with pytest.raises(ConfigError, match=r"^dataset\.classes: the dataset has one class \('dog'\)"):
        checks.check(config_for(make_tree(tmp_path / "two"), classes=["dog"]))


def test_an_empty_or_file_root_is_named_as_such(tmp_path):
    with pytest.raises(data.DatasetError, match=r"^dataset\.root must be set for kind 'imagefolder'"):
        data.resolve_classes({**config_for(tmp_path)["dataset"], "root": ""})
    (tmp_path / "data.zip").write_bytes(b"PK")
    with pytest.raises(data.DatasetError, match=r"^dataset\.root: .*data\.zip is a file; name the folder"):
        data.resolve_classes(config_for(tmp_path / "data.zip")["dataset"])


def test_a_fine_tuning_batch_larger_than_a_phase_stops_at_start(tmp_path):
    """Each phase fine-tunes on its own classes' images only: the batch must fit the smallest phase."""
    root = make_tree(tmp_path / "tree", train=3)
    config = config_for(root)
    config.update(methods=["minimax"], finetune={**config["finetune"], "batch_size": 4, "classes_per_phase": 1},
                  analysis={**config["analysis"], "enabled": False})
    with pytest.raises(ConfigError, match=r"^finetune\.batch_size 4 exceeds the 3 training images of fine-tuning "
                                          r"phase 0 \(finetune\.classes_per_phase 1\)"):
        checks.check(config)
    config["finetune"]["classes_per_phase"] = None  # one model on both classes: 6 images
    checks.check(config)


def test_minimax_memories_larger_than_the_machine_stop_at_start_naming_the_key(tmp_path):
    """memory_size so large that fine-tuning failed with a raw allocation error naming no key."""
    root = make_tree(tmp_path / "tree", train=3)
    config = config_for(root)
    config.update(methods=["minimax"], finetune={**config["finetune"], "batch_size": 2, "memory_size": 10 ** 12},
                  analysis={**config["analysis"], "enabled": False})
    with pytest.raises(ConfigError, match=r"^finetune\.memory_size: memories of 1000000000000 latents a class take "
                                          r".* GB for the 2 classes of a fine-tuning phase, more than this machine's"):
        checks.check(config)
    config["finetune"]["memory_size"] = 64
    config["studies"] = [{"name": "m", "method": "minimax", "parameter": "memory_size", "values": [16, 10 ** 12],
                          "ipcs": None, "archs": None}]
    with pytest.raises(ConfigError, match=r"^studies\[0\]\.values: memories of 1000000000000 latents"):
        checks.check(config)
    config["studies"][0]["values"] = [16, 64]
    checks.check(config)


def test_a_class_folder_name_that_is_not_utf8_stops_at_start(tmp_path):
    """Accepted before, then the sample grid failed in matplotlib after 59 files."""
    root = make_tree(tmp_path / "tree")
    os.rename(root / "train" / "dog", os.fsencode(root / "train") + b"/d\xffg")
    with pytest.raises(ConfigError, match=r"^dataset\.train_dir: class folder 'd\\udcffg' under .* is not a printable "
                                          r"UTF-8 name; rename it"):
        checks.check(config_for(root))


def test_a_link_loop_as_the_training_folder_is_named_as_one(tmp_path):
    root = make_tree(tmp_path / "tree")
    (root / "loop").symlink_to(root / "loop")
    with pytest.raises(data.DatasetError, match=r"^dataset\.train_dir: folder .*loop is a broken or looping link"):
        data.resolve_classes(config_for(root, train_dir="loop")["dataset"])


def test_a_results_folder_that_cannot_be_written_stops_at_start_naming_it(tmp_path, monkeypatch):
    """It gave a 40-line Snakemake traceback. Made unwritable with the immutable attribute, which
    binds root too (mode bits do not)."""
    import subprocess

    monkeypatch.chdir(tmp_path)
    (tmp_path / "results").mkdir()
    if subprocess.run(["chattr", "+i", "results"], capture_output=True).returncode != 0:
        pytest.skip("chattr +i is not available on this file system")
    try:
        config = config_for(make_tree(tmp_path / "tree"))
        config["analysis"]["enabled"] = False  # 2 images a set: too few for its neighbours
        with pytest.raises(ConfigError, match=r"^experiment: cannot write in results \(Operation not permitted\), "
                                              r"where results/x goes; make it writable"):
            plan.check(config)
    finally:
        subprocess.run(["chattr", "-i", "results"], check=True)
    plan.check(config)
    assert os.listdir(tmp_path / "results") == []  # the write probe leaves nothing

"""The real data as per-class shards (issue 20): the pixels of the in-memory decode whatever the
number of decoding processes, a prepare that resumes class by class, reads through the memory map
that gather only what they index, and trainings on a mapped split equal to those on a tensor."""

import pytest
import torch
from PIL import Image

from minimaxdd import data, io, shards

from conftest import make_tree, schema_defaults, toy_split, train_hard


def imagefolder(root, **overrides) -> dict:
    return {**schema_defaults("dataset"), "kind": "imagefolder", "root": str(root), "resolution": 8, "channels": 3,
            **overrides}


def prepared(dataset, folder, workers=1):
    index = folder / "train" / shards.INDEX
    data.prepare_split(dataset, "train", index, workers)
    return index


def test_shards_hold_the_pixels_of_the_in_memory_decode_whatever_the_workers(tmp_path):
    dataset = imagefolder(make_tree(tmp_path / "tree", train=(5, 3), width=40, height=30))
    expected = data.load_split(dataset, "train")
    for workers in (1, 2):
        split = shards.open_split(prepared(dataset, tmp_path / f"w{workers}", workers))
        assert torch.equal(split.images[:], expected.images) and torch.equal(split.labels, expected.labels)
        assert (split.class_names, split.class_ids, split.counts) == (expected.class_names, expected.class_ids, [5, 3])
        assert torch.equal(split.by_class(1), expected.by_class(1))
    assert [(tmp_path / "w1/train" / name).read_bytes() for name in ("0.npy", "1.npy")] == \
           [(tmp_path / "w2/train" / name).read_bytes() for name in ("0.npy", "1.npy")]


def test_a_resumed_prepare_decodes_only_the_unfinished_and_the_changed_classes(tmp_path, capsys):
    root = make_tree(tmp_path / "tree", train=3, classes=("cat", "dog", "fish"))
    dataset, folder = imagefolder(root), tmp_path / "data"
    index = prepared(dataset, folder)
    first = {k: (folder / f"train/{k}.npy").stat().st_mtime_ns for k in range(3)}
    capsys.readouterr()

    index.unlink()  # killed after class 0 and before class 2 finished: its sources file is missing
    (folder / "train/2.json").unlink()
    Image.new("RGB", (12, 12), (1, 2, 3)).save(root / "train/dog/0.png")  # a changed image
    prepared(dataset, folder)
    assert "1 of 3 class shards were complete and unchanged: kept" in capsys.readouterr().out
    assert (folder / "train/0.npy").stat().st_mtime_ns == first[0]
    assert shards.open_split(index).by_class(1)[0, :, 0, 0].tolist() == [1, 2, 3]

    (folder / "train/0.npy").write_bytes((folder / "train/0.npy").read_bytes()[:-5])  # a damaged shard
    assert io.damaged_artifacts(folder) == [folder / "train/0.npy"]
    prepared(dataset, folder)  # is decoded again
    assert io.damaged_artifacts(folder) == []


def test_a_changed_class_list_leaves_no_stale_shard(tmp_path):
    root = make_tree(tmp_path / "tree", classes=("cat", "dog", "fish"))
    folder = tmp_path / "data"
    prepared(imagefolder(root), folder)
    index = prepared(imagefolder(root, classes=["fish", "cat"]), folder)
    assert sorted(p.name for p in (folder / "train").glob("*.npy")) == ["0.npy", "1.npy"]
    split = shards.open_split(index)
    assert split.class_names == ["fish", "cat"] and split.counts == [3, 3]
    assert torch.equal(split.images[:], data.load_split(imagefolder(root, classes=["fish", "cat"]), "train").images)


def test_mapped_images_gather_any_index_as_the_tensor_would(tmp_path):
    x, y = toy_split(per_class=4, seed=0)
    folder = tmp_path / "split"
    for k in range(3):
        shards.write_shard(folder, k, x[y == k].numpy(), [], "f")
    shards.write_index(folder / shards.INDEX, ["a", "b", "c"], [0, 1, 2], [4, 4, 4], {})
    images = shards.open_split(folder / shards.INDEX).images
    assert len(images) == 12 and images.shape == x.shape and images.dtype == torch.uint8
    for index in (torch.tensor([11, 0, 5, 5, 4]), slice(3, 9), [7], torch.arange(12).flip(0)):
        assert torch.equal(images[index], x[index] if not isinstance(index, list) else x[torch.tensor(index)])
    assert torch.equal(torch.cat(list(images.split(5))), x)
    doubled = images.mapped(lambda batch: batch.repeat_interleave(2, -1).repeat_interleave(2, -2), 32)
    assert doubled.shape == (12, 1, 32, 32) and torch.equal(doubled[[2]], x[[2]].repeat_interleave(2, -1)
                                                             .repeat_interleave(2, -2))
    with pytest.raises(IndexError):
        images[torch.tensor([12])]


def test_training_on_a_mapped_split_is_training_on_the_tensor(tmp_path):
    """The real split is read a batch at a time: the same draws, the same records, bit for bit."""
    x, y = toy_split(per_class=6, seed=1)
    test_x, test_y = toy_split(per_class=2, seed=2)
    folder = tmp_path / "split"
    for k in range(3):
        shards.write_shard(folder, k, x[y == k].numpy(), [], "f")
    shards.write_index(folder / shards.INDEX, ["a", "b", "c"], [0, 1, 2], [6, 6, 6], {})
    mapped = shards.open_split(folder / shards.INDEX)
    order = torch.argsort(y, stable=True)  # the shards hold the images in class order
    on_tensor = train_hard(x[order], y[order], test=(test_x, test_y), epochs=2)
    on_map = train_hard(mapped.images, mapped.labels, test=(test_x, test_y), epochs=2)
    strip = lambda record: {k: v for k, v in record.items() if "wall" not in k}
    assert strip(on_map[0][1]) == strip(on_tensor[0][1])
    for a, b in zip(on_map[0][0].state_dict().values(), on_tensor[0][0].state_dict().values()):
        assert torch.equal(a, b)


def test_the_data_stages_disk_estimate_and_a_run_that_would_not_fit(tmp_path, monkeypatch):
    from minimaxdd import checks, plan

    imagenet1k = plan.load_config({"experiment": "x", "dataset": {"kind": "imagefolder", "resolution": 256, "channels": 3},
                                   "base_models": {"vae": "sd-vae"}})
    needed = checks.data_disk_bytes(imagenet1k, {"train": 1_281_167, "test": 50_000}, encoded=True)
    assert round(needed["shards"] / 1e9, 1) == 261.7 and round(needed["latents"] / 1e9, 1) == 42.0
    assert "igd" not in needed  # no influence-guided method
    with_igd = plan.load_config({**imagenet1k, "methods": ["igd_minimax"],
                                 "dataset": {**imagenet1k["dataset"], "classes": "data/imagenet/imagenet1k-wnids.txt"}})
    gradients = checks.data_disk_bytes(with_igd, {"train": 1_281_167, "test": 50_000}, encoded=True)["igd"]
    assert gradients == 2 * 1000 * 4 * 2_792_040  # bfloat16, 4 checkpoints of ConvNet-6 at 256 px for 1000 classes

    config = plan.load_config({"experiment": "x", "dataset": imagefolder(make_tree(tmp_path / "tree"))})
    exp = tmp_path / "results/x"
    checks.check_disk(config, exp, encoded=True)  # a few kB: fits
    monkeypatch.setattr("shutil.disk_usage", lambda path: type("Usage", (), {"free": 100})())
    with pytest.raises(checks.ConfigError, match=r"^experiment: .*results/x needs about 0\.0 GB more for the data "
                                                 r"shards .* has 0\.0 GB free"):
        checks.check_disk(config, exp, encoded=True)


def test_encoding_scattered_over_class_chunks_gives_each_phase_its_latents(tmp_path):
    """encode.classes_per_job: each job encodes its classes' shards; a fine-tuning phase joins the
    files holding its classes into the latents the one-job cache holds for them."""
    from minimaxdd import stages
    from minimaxdd.training import load_latents
    from minimaxdd.vae import build_tiny_vae, save_vae

    digits = {**schema_defaults("dataset"), "kind": "digits", "resolution": 8, "channels": 1}
    index = tmp_path / "data/train" / shards.INDEX
    data.prepare_split(digits, "train", index, workers=1)
    torch.manual_seed(0)
    save_vae(build_tiny_vae(1, 8, [8, 8], 2), tmp_path / "vae")
    encode = lambda out, classes: stages.encode(train=str(index), vae=str(tmp_path / "vae"), latents=str(out),
                                                batch_size=16, classes=classes, device="cpu")
    encode(tmp_path / "all.pt", None)
    chunks = [tmp_path / "0-4.pt", tmp_path / "5-9.pt"]
    encode(chunks[0], [0, 1, 2, 3, 4])
    encode(chunks[1], [5, 6, 7, 8, 9])

    whole = load_latents([str(tmp_path / "all.pt")], [3, 7])
    joined = load_latents([str(c) for c in chunks], [3, 7])
    keep = torch.argsort(whole["labels"], stable=True)  # the one-job cache keeps the split's order
    assert torch.equal(joined["labels"], whole["labels"][keep])
    for key in ("mean", "std"):
        torch.testing.assert_close(joined[key], whole[key][keep], atol=2e-3, rtol=0)  # batches differ: fp16 rounding
    assert joined["class_ids"] == whole["class_ids"] == list(range(10))
    assert len(load_latents([str(chunks[0])], [3])["labels"]) == int((whole["labels"] == 3).sum())

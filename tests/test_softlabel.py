"""RDED soft-label validation: loss, teacher loading, class-order check, training and resume."""

import argparse
import math
import re

import pytest
import torch
from torch import nn

from minimaxdd.classifier import to_model_input
from minimaxdd.nets import ResNet18BN, build_bn_net
from minimaxdd.softlabel import (NORMALIZE, check_teacher_class_order, load_teacher, rded_batch_size,
                                 rded_evaluation_epochs, rded_lr_factor, rded_test_images, shuffle_patches,
                                 soft_label_loss, teacher_logits, train_soft_label, weight_decay_groups)

from conftest import assert_resumes_bit_for_bit, soft_label

COLOURS = ((255, 0, 0), (0, 255, 0), (0, 0, 255))  # dataset classes 0, 1, 2
CLASS_IDS = [4, 1, 2]  # their outputs of the 6-class toy teacher


class ColourTeacher(nn.Module):
    """A 6-class 'ImageNet' teacher that classifies solid red, green and blue images perfectly:
    output 4 follows the red channel, 1 the green one, 2 the blue one, the others stay low."""

    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(3, 6)
        with torch.no_grad():
            self.fc.weight.zero_()
            self.fc.bias.fill_(-10.0)
            for channel, output in enumerate(CLASS_IDS):
                self.fc.weight[output, channel] = 4.0
                self.fc.bias[output] = 0.0

    def forward(self, x):
        return self.fc(x.mean(dim=(2, 3)))


def colour_split(per_class, seed, size=16):
    """Solid colour images with a little noise, labels 0..2."""
    generator = torch.Generator().manual_seed(seed)
    labels = torch.arange(3).repeat_interleave(per_class)
    base = torch.tensor(COLOURS, dtype=torch.float32)[labels][:, :, None, None].expand(-1, -1, size, size)
    noise = torch.randint(-20, 21, base.shape, generator=generator).float()
    return (base + noise).clamp(0, 255).to(torch.uint8), labels


def entropy(p):
    return -(p * p.log()).sum(1).mean().item()


def test_a_student_equal_to_the_teacher_has_zero_loss():
    logits = torch.randn(4, 7)
    assert soft_label_loss(logits, logits.clone(), temperature=20).item() == pytest.approx(0.0, abs=1e-7)


def test_loss_is_the_batchmean_kl_at_temperature_without_t_squared():
    student = torch.tensor([[1.0, 2.0, 3.0], [0.0, 0.0, 0.0]])
    teacher = torch.tensor([[3.0, 2.0, 1.0], [2.0, 0.0, -2.0]])
    temperature = 2.0

    def softmax(row):
        e = [math.exp(v / temperature) for v in row]
        return [v / sum(e) for v in e]

    kl = sum(pi * math.log(pi / qi) for s, t in zip(student.tolist(), teacher.tolist())
             for pi, qi in zip(softmax(t), softmax(s))) / 2  # summed over classes, averaged over the batch
    assert soft_label_loss(student, teacher, temperature).item() == pytest.approx(kl, rel=1e-5)


def test_higher_temperature_gives_softer_targets():
    teacher = torch.randn(8, 10) * 5
    entropies = [entropy(torch.softmax(teacher / t, 1)) for t in (1, 4, 20)]
    assert entropies[0] < entropies[1] < entropies[2] < math.log(10)


def test_resnet18_bn_has_torchvision_keys_shapes_and_parameter_count():
    net = ResNet18BN()
    state = net.state_dict()
    assert sum(p.numel() for p in net.parameters()) == 11_689_512  # torchvision resnet18, 1000 classes
    assert len(state) == 122  # 62 parameters, 3 buffers per each of the 20 BNs
    shapes = {"conv1.weight": (64, 3, 7, 7), "bn1.running_var": (64,), "layer1.0.conv1.weight": (64, 64, 3, 3),
              "layer1.1.bn2.num_batches_tracked": (), "layer2.0.downsample.0.weight": (128, 64, 1, 1),
              "layer2.0.downsample.1.running_mean": (128,), "layer4.1.conv2.weight": (512, 512, 3, 3),
              "fc.weight": (1000, 512), "fc.bias": (1000,)}
    assert {k: tuple(state[k].shape) for k in shapes} == shapes
    assert "layer1.0.downsample.0.weight" not in state
    small = build_bn_net("resnet18_bn", 3, 10, 32, width_factor=0.125)
    with torch.no_grad():
        assert small.conv1.kernel_size == (3, 3) and small(torch.randn(2, 3, 32, 32)).shape == (2, 10)


def test_teacher_state_dict_round_trip(tmp_path):
    net = ResNet18BN(3, 10, width=8).eval()
    with torch.no_grad():  # non-trivial running statistics
        for m in net.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.uniform_(-0.1, 0.1)
                m.running_var.uniform_(0.5, 1.5)
    x = torch.randn(2, 3, 64, 64)
    plain, wrapped = tmp_path / "plain.pth", tmp_path / "wrapped.pth"
    torch.save(net.state_dict(), plain)
    torch.save({"model": {f"module.{k}": v for k, v in net.state_dict().items()}, "epoch": 3,
                "args": argparse.Namespace(lr=0.1)}, wrapped)  # as torchvision's train script saves
    for path in (plain, wrapped):
        teacher = load_teacher(path, num_classes=10)
        assert not teacher.training and not any(p.requires_grad for p in teacher.parameters())
        with torch.no_grad():
            assert torch.equal(teacher(x), net(x))


def test_teacher_errors_name_the_file(tmp_path):
    path = tmp_path / "teacher.pth"
    torch.save(ResNet18BN(3, 10, width=8).state_dict(), path)
    with pytest.raises(ValueError, match=r"teacher\.pth has 10 output classes \(fc\.weight 10 x 64\), expected 1000"):
        load_teacher(path, num_classes=1000)
    foreign = tmp_path / "notes.pth"
    foreign.write_text("not a checkpoint")
    with pytest.raises(ValueError, match=r"notes\.pth is not a torch checkpoint"):
        load_teacher(foreign, num_classes=10)
    state = ResNet18BN(3, 10, width=8).state_dict()
    del state["layer3.1.bn2.running_var"]
    state["head.weight"] = torch.zeros(1)
    torch.save(state, path)
    with pytest.raises(ValueError, match=r"teacher\.pth is not a torchvision resnet18 state dict: missing keys "
                                         r"\['layer3\.1\.bn2\.running_var'\]; unexpected keys \['head\.weight'\]"):
        load_teacher(path, num_classes=10)
    torch.save({"conv.weight": torch.zeros(1)}, path)
    with pytest.raises(ValueError, match=r"teacher\.pth is not a torchvision-format ResNet-18"):
        load_teacher(path, num_classes=10)
    with pytest.raises(FileNotFoundError, match="absent.pth"):
        load_teacher(tmp_path / "absent.pth", num_classes=10)


def test_class_order_check_passes_with_the_right_ids_and_fails_with_permuted_ones():
    images, labels = colour_split(4, seed=0)
    teacher = ColourTeacher()
    accuracy = check_teacher_class_order(teacher, images, labels, CLASS_IDS, resolution=16, per_class=2)
    assert accuracy == 100.0
    with pytest.raises(ValueError, match=r"class order looks wrong: accuracy 0\.0% on 6 real images .*chance 33\.3%"):
        check_teacher_class_order(teacher, images, labels, [1, 2, 4], resolution=16, per_class=2)


def test_teacher_logits_are_gathered_at_class_ids():
    teacher = ColourTeacher()
    x = torch.randn(5, 3, 8, 8)
    full = teacher(x)
    assert torch.equal(teacher_logits(teacher, x, torch.tensor(CLASS_IDS)), full[:, CLASS_IDS])
    assert torch.equal(teacher_logits(teacher, x, None), full)
    train_x, _ = colour_split(1, seed=0)
    with pytest.raises(ValueError, match="the teacher has 6 outputs but the dataset 3 classes: pass class_ids"):
        train_student(train_x, teacher, None, epochs=1)
    with pytest.raises(ValueError, match="class_ids reach 9 but the teacher has only 6 outputs"):
        train_student(train_x, teacher, [0, 1, 9], epochs=1)
    with pytest.raises(ValueError, match="class_ids has 2 entries but there are 3 classes"):
        train_student(train_x, teacher, [0, 1], epochs=1)


def train_student(train_x, teacher, class_ids, *, epochs, seeds=(0,), test=(None, None), checkpointer=None,
                  **protocol):
    """softlabel.train_soft_label of a ResNet-18 (BN) student, 3 classes, on the CPU; the first run."""
    protocol = soft_label(**{"width_factor": 0.125} | protocol)
    return train_soft_label(protocol, "resnet18_bn", train_x, teacher, *test, num_classes=3, class_ids=class_ids,
                            seeds=list(seeds), epochs=epochs, device="cpu", progress=False,
                            checkpointer=checkpointer)[0]


def test_soft_label_training_uses_the_gathered_targets(monkeypatch):
    import minimaxdd.softlabel as softlabel
    seen = []
    real = softlabel.soft_label_loss
    monkeypatch.setattr(softlabel, "soft_label_loss",
                        lambda s, t, temperature: seen.append(t) or real(s, t, temperature))
    train_x, _ = colour_split(2, seed=0)
    teacher, outputs = ColourTeacher(), []
    teacher.register_forward_hook(lambda module, args, output: outputs.append(output))
    train_student(train_x, teacher, CLASS_IDS, epochs=1, batch_size=6)
    assert len(seen) == 1 and seen[0].shape == (6, 3)
    assert outputs[-1].shape == (6, 6) and torch.equal(seen[0], outputs[-1][:, CLASS_IDS])  # [0]: the output check


def against_the_teacher(student, images, temperature):
    """The student as it trains (batch statistics) on the uint8 `images`, against ColourTeacher:
    (its soft-label loss, on how many images its top class is the teacher's)."""
    x = to_model_input(images, "cpu", NORMALIZE)
    with torch.no_grad():
        target = ColourTeacher()(x)[:, CLASS_IDS]
        logits = student.train()(x)
    student.eval()
    return soft_label_loss(logits, target, temperature).item(), int((logits.argmax(1) == target.argmax(1)).sum())


def test_student_learns_the_teachers_colours():
    """Taught by the teacher's soft labels alone, the student fits them: on the 9 training images
    its soft-label loss falls below a quarter of the untrained student's, and its top class is the
    teacher's on each.

    The training is chaotic (one step per epoch on 9 augmented, CutMixed images): another CPU's
    rounding makes another sample of it, as another seed does. So the test asserts only what
    every seed gives with a wide margin (measured, seeds 0-15, 10 epochs): the loss falls to
    0.001-0.064 of the untrained student's, and every image's top class is the teacher's by at
    least 2.4 logits. With the mechanism broken (each image taught another's soft label: the
    batch's teacher outputs shuffled) the loss stays at 0.68-1.57 of the untrained student's.
    The student is read with batch statistics, as it trains: in eval mode its BN running
    statistics lag its weights (momentum 0.19, 10 steps), so what it scores then depends on the
    seed, not on whether it learned from the teacher (after 10 epochs, 3 of the 16 seeds give the
    teacher's class on only 6 or 7 of the 9 training images in eval mode; the test split needed
    30 epochs for 9/9 on one CPU).
    """
    train_x, _ = colour_split(3, seed=0)
    test_x, test_y = colour_split(3, seed=1)
    student, record = train_student(train_x, ColourTeacher(), CLASS_IDS, epochs=10, lr=1e-2, temperature=1,
                                    test=(test_x, test_y))
    assert record["curve"] == [[10, record["accuracy_last"]]] and record["batch_size"] == 9  # ipc 3 of 3 classes
    assert record["protocol"] == "soft_label" and record["resolution"] == 16
    torch.manual_seed(0)  # the run's initial weights
    untrained, _ = against_the_teacher(build_bn_net("resnet18_bn", 3, 3, 16, width_factor=0.125), train_x, 1)
    loss, agree = against_the_teacher(student, train_x, 1)
    assert loss < untrained / 4 and agree == 9


def test_the_progress_bar_shows_a_small_loss_by_its_magnitude(capsys):
    """At T = 20 the KL is about 1e-5: a fixed-point format would show 0.0000, read as 'nothing learned'."""
    train_x, _ = colour_split(2, seed=0)
    protocol = soft_label(width_factor=0.125, temperature=20)
    _, record = train_soft_label(protocol, "resnet18_bn", train_x, ColourTeacher(), None, None, num_classes=3,
                                 class_ids=CLASS_IDS, seeds=[0], epochs=1, device="cpu", progress=True,
                                 checkpointer=None)[0]
    shown = re.findall(r"loss=([-+.\de]+)", capsys.readouterr().err)
    assert shown and float(shown[-1]) == pytest.approx(record["final_loss"], rel=0.01) and float(shown[-1]) > 0


def test_resumed_soft_label_training_equals_an_uninterrupted_one(tmp_path, monkeypatch):
    train_x, _ = colour_split(3, seed=0)  # 9 images, batch 4: 3 steps per epoch
    test_x, test_y = colour_split(1, seed=1)
    settings = dict(epochs=4, seeds=[1], batch_size=4, evaluations=4, test=(test_x, test_y))
    # stop in epoch 3, after the checkpoint of epoch 2
    assert_resumes_bit_for_bit(lambda ckpt: train_student(train_x, ColourTeacher(), CLASS_IDS, checkpointer=ckpt,
                                                          **settings),
                               torch.optim.AdamW, 7, tmp_path, monkeypatch)


def test_rded_schedule_cadence_and_batch_size():
    assert rded_lr_factor(0, 300) == 1.0 and rded_lr_factor(300, 300) == pytest.approx(0.5)  # the /2 quirk
    assert rded_evaluation_epochs(300) == list(range(250, 301, 10))  # 0-based 249..299 > 240
    assert rded_evaluation_epochs(5) == [5]  # RDED scores nothing here; we score the last epoch
    assert [rded_batch_size(ipc, 1000) for ipc in (1, 10, 50)] == [20, 100, 200]
    assert [rded_batch_size(ipc, 10) for ipc in (1, 10, 50, 20)] == [10, 50, 100, 50]
    assert rded_batch_size(1, 3) == 3  # capped at ipc * classes


def test_shuffle_patches_swaps_halves_and_weight_decay_skips_norms_and_biases():
    x = torch.arange(16.0).view(1, 1, 4, 4).expand(64, 1, 4, 4)
    out = shuffle_patches(x, 2)
    arrangements = {tuple(o.flatten().tolist()) for o in out[:, 0]}
    swaps = {tuple(x[0, 0].roll(shifts, dims).flatten().tolist())
             for shifts, dims in ((0, 0), (2, 1), (2, 0), ((2, 2), (0, 1)))}
    assert arrangements == swaps  # left/right and top/bottom halves swapped, each with probability 1/2
    net = ResNet18BN(3, 10, width=8)
    decay, no_decay = weight_decay_groups(net, 0.01)
    assert decay["weight_decay"] == 0.01 and no_decay["weight_decay"] == 0.0
    assert len(decay["params"]) == 21 and len(no_decay["params"]) == 41  # 20 convs + fc; BN scales, biases
    assert rded_test_images(torch.zeros(1, 3, 256, 256, dtype=torch.uint8), 224).shape == (1, 3, 224, 224)


def test_seeds_packed_in_one_job_give_the_records_of_their_own_jobs(tmp_path):
    """validate.group_seeds: one soft-label job trains every seed in turn; each record is the one
    the seed's own job writes (the same curve and loss), and says how many runs its job held."""
    import json

    from minimaxdd import data, stages

    (train_x, train_y), (test_x, test_y) = colour_split(3, seed=0), colour_split(2, seed=1)
    data.RealPack(train_x, train_y, ["r", "g", "b"], [0, 1, 2]).save(tmp_path / "train.pt")
    data.RealPack(test_x, test_y, ["r", "g", "b"], [0, 1, 2]).save(tmp_path / "test.pt")
    torch.manual_seed(0)
    torch.save(ResNet18BN(3, 3, width=8).state_dict(), tmp_path / "teacher.pth")
    common = dict(train=str(tmp_path / "train.pt"), test=str(tmp_path / "test.pt"), teacher=str(tmp_path / "teacher.pth"),
                  method="random", ipc=3, arch="resnet18_bn", epochs=2, batch_size=4, lr=1e-2, weight_decay=0.01,
                  temperature=20.0, resolution=None, width_factor=0.125, evaluations=2, precision="fp32",
                  teacher_classes=3, device="cpu", checkpoint_every_epochs=1)
    stages.validate_soft_label(records=[str(tmp_path / "pack0.json"), str(tmp_path / "pack1.json")], seeds=[0, 1],
                               **common)
    stages.validate_soft_label(records=[str(tmp_path / "alone1.json")], seeds=[1], **common)
    pack0, pack1, alone1 = (json.loads((tmp_path / f"{name}.json").read_text()) for name in ("pack0", "pack1", "alone1"))
    assert pack1["curve"] == alone1["curve"] and pack1["final_loss"] == alone1["final_loss"]
    assert pack0["final_loss"] != pack1["final_loss"] and pack1["seed"] == 1
    assert (pack1["group_size"], alone1["group_size"]) == (2, 1)
    assert not list(tmp_path.glob("*.resume.pt"))  # every run's checkpoint is gone once its record is written

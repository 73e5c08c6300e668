"""The three validation networks of the IDC protocol: ConvNet-D, ResNetAP-10 and ResNet-18.

All use instance norm, written as GroupNorm with one group per channel (as IDC does), so no
statistic is shared across a batch. Images are square; `resolution` is their side in pixels.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

ARCHS = ("convnet", "resnetap10", "resnet18")


def instance_norm(channels: int) -> nn.GroupNorm:
    return nn.GroupNorm(channels, channels, affine=True)


def convnet_depth(resolution: int) -> int:
    """Depth of the ConvNet for an image side: ConvNet-3 at 32 px up to ConvNet-6 at 224-256 px.

    IDC takes the depth from --depth; its ImageNet setup swaps ConvNet for ResNetAP and caps the
    depth at 4 (argument.py L298-299, L329-331), both dropped in the paper's copy of the code
    (MinimaxDiffusion argument.py), which the paper runs as ConvNet-6: a 3 x 3 last map at 224 px.
    """
    if resolution <= 32:
        return 3
    if resolution <= 64:
        return 4
    if resolution <= 128:
        return 5
    return 6


def arch_label(arch: str, resolution: int) -> str:
    """The network's name as the paper's tables write it (the soft-label student too)."""
    if arch == "resnet18_bn":
        return "ResNet-18 (BN)"
    _check_arch(arch)
    return {
        "convnet": f"ConvNet-{convnet_depth(resolution)}",
        "resnetap10": "ResNetAP-10",
        "resnet18": "ResNet-18",
    }[arch]


class ConvNet(nn.Module):
    """`depth` x (conv3x3 -> instance norm -> ReLU -> avgpool 2x2), then a linear classifier
    (IDC models/convnet.py). As there, a gray image's first conv pads by 3, not 1 (L119), which
    grows the image by 4 px (IDC sizes the classifier for it only at 28 px, L110-111)."""

    def __init__(self, in_channels: int, num_classes: int, resolution: int, width: int = 128):
        super().__init__()
        depth = convnet_depth(resolution)
        layers = []
        for i in range(depth):
            layers += [
                nn.Conv2d(in_channels if i == 0 else width, width, 3, padding=3 if in_channels == 1 and i == 0 else 1),
                instance_norm(width),
                nn.ReLU(inplace=True),
                nn.AvgPool2d(2),
            ]
        self.features = nn.Sequential(*layers)
        side = resolution + 4 if in_channels == 1 else resolution
        for _ in range(depth):
            side //= 2
        self.classifier = nn.Linear(width * side * side, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x).flatten(1))


class BasicBlock(nn.Module):
    """Two 3x3 convs around a residual connection.

    With `pool_downsample` (ResNetAP) a stride-2 block halves the size by 2x2 average pooling
    after the first conv, and the shortcut by a 1x1 conv followed by the same pooling, instead
    of striding the convs: no pixel is skipped.
    """

    def __init__(self, in_channels: int, out_channels: int, stride: int, pool_downsample: bool):
        super().__init__()
        conv_stride = 1 if pool_downsample else stride
        pool = [nn.AvgPool2d(stride)] if pool_downsample and stride > 1 else []
        self.branch = nn.Sequential(
            nn.Conv2d(in_channels, out_channels, 3, conv_stride, padding=1, bias=False),
            instance_norm(out_channels),
            nn.ReLU(inplace=True),
            *pool,
            nn.Conv2d(out_channels, out_channels, 3, padding=1, bias=False),
            instance_norm(out_channels),
        )
        if stride == 1 and in_channels == out_channels:
            self.shortcut = nn.Identity()
        else:
            self.shortcut = nn.Sequential(
                nn.Conv2d(in_channels, out_channels, 1, conv_stride, bias=False),
                *pool,
                instance_norm(out_channels),
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(self.branch(x) + self.shortcut(x))


def resnet_stem(in_channels: int, width: int, resolution: int, pool_downsample: bool) -> nn.Sequential:
    """Conv -> instance norm -> ReLU, then shrink the image by 1 (<= 64 px), 2 (<= 128 px) or 4.

    The three tiers are those of IDC's code (models/resnet.py L23-51 and L133-138,
    models/resnet_ap.py L49-77 and L165-170). Above 128 px ResNet-18 takes the ImageNet stem
    (7x7 stride-2 conv, 3x3 stride-2 max-pool); ResNetAP keeps the 7x7 conv at stride 1 and
    shrinks by 4x4 average pooling, true to its "no strided layers" design.
    """
    if resolution <= 64:  # CIFAR-style: keep every pixel
        conv, shrink = nn.Conv2d(in_channels, width, 3, padding=1, bias=False), []
    elif resolution <= 128:
        conv = nn.Conv2d(in_channels, width, 3, padding=1, bias=False)
        shrink = [nn.AvgPool2d(2) if pool_downsample else nn.MaxPool2d(3, 2, padding=1)]
    elif pool_downsample:
        conv, shrink = nn.Conv2d(in_channels, width, 7, padding=3, bias=False), [nn.AvgPool2d(4)]
    else:
        conv = nn.Conv2d(in_channels, width, 7, 2, padding=3, bias=False)
        shrink = [nn.MaxPool2d(3, 2, padding=1)]
    return nn.Sequential(conv, instance_norm(width), nn.ReLU(inplace=True), *shrink)


class ResNet(nn.Module):
    """Stem, four stages of BasicBlocks (64-128-256-512 channels), global average pool, linear."""

    def __init__(self, blocks_per_stage: tuple[int, ...], in_channels: int, num_classes: int,
                 resolution: int, pool_downsample: bool, width: int = 64):
        super().__init__()
        self.stem = resnet_stem(in_channels, width, resolution, pool_downsample)
        blocks, channels = [], width
        for stage, num_blocks in enumerate(blocks_per_stage):
            out_channels = width * 2**stage
            for i in range(num_blocks):
                stride = 2 if stage > 0 and i == 0 else 1
                blocks.append(BasicBlock(channels, out_channels, stride, pool_downsample))
                channels = out_channels
        self.blocks = nn.Sequential(*blocks)
        self.fc = nn.Linear(channels, num_classes)
        for m in self.modules():  # He init on fan-out, as the reference ResNets
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        """Globally pooled last-stage features: the embedding used for MMD, t-SNE and coresets."""
        return self.blocks(self.stem(x)).mean(dim=(2, 3))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.embed(x))


def _check_arch(arch: str) -> None:
    if arch not in ARCHS:
        raise ValueError(f"unknown architecture {arch!r}; valid names: {', '.join(ARCHS)}")


def build_net(arch: str, in_channels: int, num_classes: int, resolution: int, width_factor: float = 1.0) -> nn.Module:
    """`width_factor` scales every layer's channels (1.0: the paper's nets; smaller for CPU demos),
    truncated as IDC's int(128 * width) and int(64 * width) (train.py L61, models/resnet_ap.py L207)."""
    _check_arch(arch)
    if arch == "convnet":
        return ConvNet(in_channels, num_classes, resolution, width=max(1, int(128 * width_factor)))
    width = max(1, int(64 * width_factor))
    if arch == "resnetap10":
        return ResNet((1, 1, 1, 1), in_channels, num_classes, resolution, pool_downsample=True, width=width)
    return ResNet((2, 2, 2, 2), in_channels, num_classes, resolution, pool_downsample=False, width=width)


# ----------------------------------------------------------------------------------------------
# Batch-norm ResNet-18 in torchvision's layout: the teacher (and student) of RDED's soft-label
# protocol (LINs-lab/RDED synthesize/utils.py:169-255 builds torchvision's resnet18; below 65 px
# its "resnet18_modified", L193-198: 3x3 stride-1 first conv, no max-pool).
# ----------------------------------------------------------------------------------------------

BN_ARCHS = ("resnet18_bn",)


class BasicBlockBN(nn.Module):
    """torchvision's BasicBlock: conv1-bn1-relu-conv2-bn2 plus the shortcut `downsample`
    (1x1 strided conv, bn) when the shape changes; parameter names as torchvision's."""

    def __init__(self, in_channels: int, out_channels: int, stride: int):
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(out_channels)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_channels)
        self.downsample = None
        if stride != 1 or in_channels != out_channels:
            self.downsample = nn.Sequential(nn.Conv2d(in_channels, out_channels, 1, stride, bias=False),
                                            nn.BatchNorm2d(out_channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.bn2(self.conv2(self.relu(self.bn1(self.conv1(x)))))
        return self.relu(out + (x if self.downsample is None else self.downsample(x)))


class ResNet18BN(nn.Module):
    """ResNet-18 with batch norm whose state_dict keys and shapes are torchvision's `resnet18`
    (conv1, bn1, layer1.0.conv1, ..., layer2.0.downsample.0, ..., fc), so a torchvision
    ImageNet-1K weights file loads into it: 11,689,512 parameters for 1000 classes.

    `stem="imagenet"`: 7x7 stride-2 conv and 3x3 stride-2 max-pool (torchvision);
    `stem="small"`: 3x3 stride-1 conv and no max-pool (RDED's resnet18_modified for 32-64 px).
    Initialisation as torchvision's: He normal (fan-out) convs, BN weight 1 and bias 0.
    """

    def __init__(self, in_channels: int = 3, num_classes: int = 1000, stem: str = "imagenet", width: int = 64):
        super().__init__()
        if stem not in ("imagenet", "small"):
            raise ValueError(f"stem must be 'imagenet' or 'small', got {stem!r}")
        self.stem = stem
        if stem == "imagenet":
            self.conv1 = nn.Conv2d(in_channels, width, 7, 2, padding=3, bias=False)
            self.maxpool = nn.MaxPool2d(3, 2, padding=1)
        else:
            self.conv1 = nn.Conv2d(in_channels, width, 3, 1, padding=1, bias=False)
            self.maxpool = nn.Identity()
        self.bn1 = nn.BatchNorm2d(width)
        self.relu = nn.ReLU(inplace=True)
        channels = width
        for stage in range(4):
            out_channels = width * 2**stage
            stride = 1 if stage == 0 else 2
            setattr(self, f"layer{stage + 1}", nn.Sequential(BasicBlockBN(channels, out_channels, stride),
                                                             BasicBlockBN(out_channels, out_channels, 1)))
            channels = out_channels
        self.fc = nn.Linear(channels, num_classes)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return x.mean(dim=(2, 3))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.embed(x))


def build_bn_net(arch: str, in_channels: int, num_classes: int, resolution: int,
                 width_factor: float = 1.0) -> nn.Module:
    """A batch-norm net of `BN_ARCHS`: "resnet18_bn" is torchvision's ResNet-18 above 64 px and
    RDED's resnet18_modified stem at 64 px and below (RDED uses it for CIFAR and Tiny-ImageNet)."""
    if arch not in BN_ARCHS:
        raise ValueError(f"unknown batch-norm architecture {arch!r}; valid names: {', '.join(BN_ARCHS)}")
    return ResNet18BN(in_channels, num_classes, stem="small" if resolution <= 64 else "imagenet",
                      width=max(1, int(64 * width_factor)))

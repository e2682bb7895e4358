"""Image encoders for camera observations: uint8 HWC frames → one feature vector per frame.

Two backbones, both with GroupNorm (no batch statistics, so a frame's feature does not depend on the
batch it is in) and a spatial-softmax keypoint head: Diffusion Policy's ResNet-18 with its global pooling
and classifier replaced by the keypoint head, and a small CNN sized for CPU training (the default).
Frames are cropped at random while training (a batched gather, no per-item Python) and centred at
evaluation, scaled to [0, 1] and optionally standardised per channel.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

import torch
from torch import Tensor, nn

EncoderKind = Literal["cnn", "resnet18"]

Crop = Callable[[tuple[int, ...], int], Tensor]
"""crop_offsets(shape, high) -> integer offsets in [0, high) of `shape` (the training random stream)."""


@dataclass
class VisionConfig:
    """The image encoder of a policy that conditions on camera frames."""

    encoder: EncoderKind = "cnn"
    """Backbone: 'cnn' (small GroupNorm CNN, fast on a CPU) or 'resnet18' (Diffusion Policy's ResNet-18
    with GroupNorm, trained from scratch: no weights are downloaded)."""
    feature_dim: int = 64
    """Feature size per camera and observation step (a linear layer after the keypoints)."""
    shared: bool = False
    """One encoder shared by every camera (True) or one encoder per camera (False, as Diffusion Policy)."""
    crop: int = 84
    """Side of the square crop: random while training, centred at evaluation (Diffusion Policy: 84 of 96);
    0 = no crop. Must not exceed a frame's height or width."""
    keypoints: int = 32
    """Spatial-softmax keypoints K of the head (the head gives 2K expected coordinates)."""
    cnn_channels: tuple[int, ...] = (32, 64, 64)
    """Widths of the small CNN's stride-2 3×3 conv layers (encoder='cnn')."""
    group_size: int = 16
    """Channels per GroupNorm group (Diffusion Policy: 16); a layer narrower than this has one group."""
    standardize: bool = False
    """Standardise each colour channel with the training frames' mean and std (after scaling to [0, 1])."""


def _norm(channels: int, group_size: int) -> nn.GroupNorm:
    return nn.GroupNorm(max(1, channels // group_size), channels)


class SpatialSoftmax(nn.Module):
    """A learned 1×1 conv to K heat maps, a softmax over each map's pixels, and the expected (x, y) of
    each: (B, C, H, W) → (B, 2K) with coordinates in [−1, 1] (x left to right, y top to bottom)."""

    def __init__(self, in_channels: int, keypoints: int) -> None:
        super().__init__()
        self.keypoints = keypoints
        self.conv = nn.Conv2d(in_channels, keypoints, kernel_size=1)

    def forward(self, x: Tensor) -> Tensor:
        b, _, h, w = x.shape
        maps = self.conv(x).flatten(2).softmax(dim=-1)  # (B, K, H·W)
        ys = torch.linspace(-1.0, 1.0, h, device=x.device, dtype=maps.dtype)
        xs = torch.linspace(-1.0, 1.0, w, device=x.device, dtype=maps.dtype)
        grid = torch.stack(torch.meshgrid(xs, ys, indexing="xy"), dim=-1).reshape(h * w, 2)
        return (maps @ grid).reshape(b, 2 * self.keypoints)


class _BasicBlock(nn.Module):
    """ResNet's basic block (two 3×3 convs and a skip), GroupNorm in place of BatchNorm."""

    def __init__(self, c_in: int, c_out: int, stride: int, group_size: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(c_in, c_out, 3, stride, 1, bias=False)
        self.norm1 = _norm(c_out, group_size)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, 1, 1, bias=False)
        self.norm2 = _norm(c_out, group_size)
        self.skip: nn.Module = nn.Identity()
        if stride != 1 or c_in != c_out:
            self.skip = nn.Sequential(nn.Conv2d(c_in, c_out, 1, stride, bias=False), _norm(c_out, group_size))

    def forward(self, x: Tensor) -> Tensor:
        h = torch.relu(self.norm1(self.conv1(x)))
        return torch.relu(self.norm2(self.conv2(h)) + self.skip(x))


def resnet18_trunk(group_size: int) -> tuple[nn.Sequential, int]:
    """ResNet-18's convolutional trunk (stem, four stages of two basic blocks) with GroupNorm, and its
    output width (512); stride 32 overall."""
    layers: list[nn.Module] = [
        nn.Conv2d(3, 64, 7, 2, 3, bias=False),
        _norm(64, group_size),
        nn.ReLU(),
        nn.MaxPool2d(3, 2, 1),
    ]
    c_in = 64
    for c_out, stride in ((64, 1), (128, 2), (256, 2), (512, 2)):
        layers += [_BasicBlock(c_in, c_out, stride, group_size), _BasicBlock(c_out, c_out, 1, group_size)]
        c_in = c_out
    return nn.Sequential(*layers), c_in


def small_cnn_trunk(channels: tuple[int, ...], group_size: int) -> tuple[nn.Sequential, int]:
    """Stride-2 3×3 convs with GroupNorm and ReLU, then a stride-1 3×3 conv: the CPU encoder's trunk (ReLU:
    Mish costs more than a conv here on a CPU)."""
    layers: list[nn.Module] = []
    c_in = 3
    for c_out in channels:
        layers += [nn.Conv2d(c_in, c_out, 3, 2, 1), _norm(c_out, group_size), nn.ReLU()]
        c_in = c_out
    layers += [nn.Conv2d(c_in, c_in, 3, 1, 1), _norm(c_in, group_size), nn.ReLU()]
    return nn.Sequential(*layers), c_in


class FrameEncoder(nn.Module):
    """One backbone: float frames (N, 3, H, W) in [0, 1] (standardised) → features (N, feature_dim)."""

    def __init__(self, cfg: VisionConfig) -> None:
        super().__init__()
        if cfg.encoder == "resnet18":
            trunk, width = resnet18_trunk(cfg.group_size)
        else:
            trunk, width = small_cnn_trunk(tuple(cfg.cnn_channels), cfg.group_size)
        self.trunk = trunk
        self.keypoints = SpatialSoftmax(width, cfg.keypoints)
        self.out = nn.Linear(2 * cfg.keypoints, cfg.feature_dim)

    def forward(self, x: Tensor) -> Tensor:
        return self.out(self.keypoints(self.trunk(x)))


def centre_crop(frames: Tensor, size: int) -> Tensor:
    """The centred size×size crop of frames (..., H, W, C)."""
    h, w = frames.shape[-3], frames.shape[-2]
    top, left = (h - size) // 2, (w - size) // 2
    return frames[..., top : top + size, left : left + size, :]


def random_crop(frames: Tensor, size: int, offsets: Crop) -> Tensor:
    """An independent random size×size crop of every frame of (B, T, H, W, C), gathered in one indexing
    operation; `offsets(shape, high)` draws the top-left corners."""
    b, t, h, w, _ = frames.shape
    dev = frames.device
    top = offsets((b, t), h - size + 1).to(dev)
    left = offsets((b, t), w - size + 1).to(dev)
    span = torch.arange(size, device=dev)
    rows = (top[..., None] + span)[..., :, None]  # (B, T, size, 1)
    cols = (left[..., None] + span)[..., None, :]  # (B, T, 1, size)
    bi = torch.arange(b, device=dev)[:, None, None, None]
    ti = torch.arange(t, device=dev)[None, :, None, None]
    return frames[bi, ti, rows, cols]


class ImageEncoder(nn.Module):
    """Camera frames {key: uint8 (B, T, H, W, 3)} → features (B, T, n_cameras · feature_dim).

    Cameras are encoded in sorted key order, by one backbone each or by one shared backbone. Random crops
    in training mode need `offsets` (the training noise stream); evaluation crops the centre.
    """

    mean: Tensor
    std: Tensor

    def __init__(self, cfg: VisionConfig, image_shapes: dict[str, tuple[int, int, int]]) -> None:
        super().__init__()
        self.cfg = cfg
        self.keys = sorted(image_shapes)
        self.shapes = {k: tuple(int(s) for s in image_shapes[k]) for k in self.keys}
        n_nets = 1 if cfg.shared else len(self.keys)
        self.nets = nn.ModuleList(FrameEncoder(cfg) for _ in range(n_nets))
        self.register_buffer("mean", torch.zeros(len(self.keys), 3))
        self.register_buffer("std", torch.ones(len(self.keys), 3))

    @property
    def out_dim(self) -> int:
        """Features per observation step."""
        return len(self.keys) * self.cfg.feature_dim

    def set_statistics(self, frames: dict[str, Tensor]) -> None:
        """Per-channel mean and std of each camera's training frames (uint8 (N, H, W, 3)) for
        `standardize`, computed in chunks without a float copy of every frame."""
        for i, key in enumerate(self.keys):
            total = torch.zeros(3, dtype=torch.float64)
            squares = torch.zeros(3, dtype=torch.float64)
            data = frames[key]
            n = 0
            for start in range(0, data.shape[0], 1024):
                part = data[start : start + 1024].reshape(-1, 3).double() / 255.0
                total += part.sum(0)
                squares += (part * part).sum(0)
                n += part.shape[0]
            mean = total / max(n, 1)
            std = (squares / max(n, 1) - mean * mean).clamp_min(1e-6).sqrt()
            self.mean[i].copy_(mean.float())
            self.std[i].copy_(std.float())

    def prepare(self, frames: Tensor, camera: int, offsets: Crop | None) -> Tensor:
        """uint8 (B, T, H, W, 3) → cropped float (B·T, 3, h, w), scaled and (optionally) standardised."""
        size = self.cfg.crop
        if size > 0:
            if self.training and offsets is not None:
                frames = random_crop(frames, size, offsets)
            else:
                frames = centre_crop(frames, size)
        x = frames.flatten(0, 1).permute(0, 3, 1, 2).float() / 255.0
        if self.cfg.standardize:
            x = (x - self.mean[camera, :, None, None]) / self.std[camera, :, None, None]
        return x

    def forward(self, images: dict[str, Tensor], offsets: Crop | None = None) -> Tensor:
        parts = []
        for i, key in enumerate(self.keys):
            frames = images[key]
            b, t = frames.shape[:2]
            net = self.nets[0 if self.cfg.shared else i]
            parts.append(net(self.prepare(frames, i, offsets)).reshape(b, t, -1))
        return torch.cat(parts, dim=-1)

"""A compact class-conditional DiT (Peebles & Xie, 2023) with Difffit scale factors.

Parameter names follow facebookresearch/DiT, so its checkpoints (e.g. DiT-XL-2-256x256.pt) load as
they are. Difffit (Xie et al., 2023) adds learnable per-channel scales `gamma` to the first half of
the blocks: on the qkv projection output, the attention output projection and both residual
branches. They start at 1, so a freshly loaded model computes exactly what the checkpoint did.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F


@dataclass(frozen=True)
class DiTConfig:
    input_size: int = 32  # latent side length
    patch_size: int = 2
    in_channels: int = 4
    hidden_size: int = 1152
    depth: int = 28
    num_heads: int = 16
    mlp_ratio: float = 4.0
    class_dropout_prob: float = 0.1
    num_classes: int = 1000
    learn_sigma: bool = True

    def to_dict(self) -> dict:
        return asdict(self)


DIT_XL_2 = DiTConfig()


def modulate(x, shift, scale):
    return x * (1 + scale.unsqueeze(1)) + shift.unsqueeze(1)


class PatchEmbed(nn.Module):
    def __init__(self, patch_size, in_channels, hidden_size):
        super().__init__()
        self.proj = nn.Conv2d(in_channels, hidden_size, kernel_size=patch_size, stride=patch_size)

    def forward(self, x):
        return self.proj(x).flatten(2).transpose(1, 2)  # (N, T, D)


class TimestepEmbedder(nn.Module):
    def __init__(self, hidden_size, frequency_embedding_size=256):
        super().__init__()
        self.mlp = nn.Sequential(
            nn.Linear(frequency_embedding_size, hidden_size), nn.SiLU(), nn.Linear(hidden_size, hidden_size)
        )
        self.frequency_embedding_size = frequency_embedding_size

    @staticmethod
    def timestep_embedding(t, dim, max_period=10000):
        half = dim // 2
        freqs = torch.exp(-math.log(max_period) * torch.arange(half, dtype=torch.float32, device=t.device) / half)
        args = t[:, None].float() * freqs[None]
        return torch.cat([torch.cos(args), torch.sin(args)], dim=-1)

    def forward(self, t):
        return self.mlp(self.timestep_embedding(t, self.frequency_embedding_size))


class LabelEmbedder(nn.Module):
    """Class embedding with one extra 'null' row; labels are dropped during training for guidance."""

    def __init__(self, num_classes, hidden_size, dropout_prob):
        super().__init__()
        self.embedding_table = nn.Embedding(num_classes + int(dropout_prob > 0), hidden_size)
        self.num_classes = num_classes
        self.dropout_prob = dropout_prob

    def forward(self, labels):
        if self.training and self.dropout_prob > 0:
            drop = torch.rand(labels.shape[0], device=labels.device) < self.dropout_prob
            labels = torch.where(drop, self.num_classes, labels)
        return self.embedding_table(labels)


class Attention(nn.Module):
    def __init__(self, dim, num_heads, use_gamma):
        super().__init__()
        self.num_heads = num_heads
        self.qkv = nn.Linear(dim, dim * 3)
        self.proj = nn.Linear(dim, dim)
        if use_gamma:
            self.gamma1 = nn.Parameter(torch.ones(dim * 3))
            self.gamma2 = nn.Parameter(torch.ones(dim))

    def forward(self, x):
        B, T, D = x.shape
        qkv = self.qkv(x)
        if hasattr(self, "gamma1"):
            qkv = qkv * self.gamma1
        q, k, v = qkv.reshape(B, T, 3, self.num_heads, D // self.num_heads).permute(2, 0, 3, 1, 4)
        x = F.scaled_dot_product_attention(q, k, v).transpose(1, 2).reshape(B, T, D)
        x = self.proj(x)
        return x * self.gamma2 if hasattr(self, "gamma2") else x


class Mlp(nn.Module):
    def __init__(self, dim, hidden):
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.act = nn.GELU(approximate="tanh")
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x):
        return self.fc2(self.act(self.fc1(x)))


class DiTBlock(nn.Module):
    """Transformer block with adaLN-Zero conditioning."""

    def __init__(self, hidden_size, num_heads, mlp_ratio, use_gamma):
        super().__init__()
        self.norm1 = nn.LayerNorm(hidden_size, elementwise_affine=False, eps=1e-6)
        self.attn = Attention(hidden_size, num_heads, use_gamma)
        self.norm2 = nn.LayerNorm(hidden_size, elementwise_affine=False, eps=1e-6)
        self.mlp = Mlp(hidden_size, int(hidden_size * mlp_ratio))
        self.adaLN_modulation = nn.Sequential(nn.SiLU(), nn.Linear(hidden_size, 6 * hidden_size))
        if use_gamma:
            self.gamma1 = nn.Parameter(torch.ones(hidden_size))
            self.gamma2 = nn.Parameter(torch.ones(hidden_size))

    def forward(self, x, c):
        shift_msa, scale_msa, gate_msa, shift_mlp, scale_mlp, gate_mlp = self.adaLN_modulation(c).chunk(6, dim=1)
        attn = gate_msa.unsqueeze(1) * self.attn(modulate(self.norm1(x), shift_msa, scale_msa))
        if hasattr(self, "gamma1"):
            attn = attn * self.gamma1
        x = x + attn
        mlp = gate_mlp.unsqueeze(1) * self.mlp(modulate(self.norm2(x), shift_mlp, scale_mlp))
        if hasattr(self, "gamma2"):
            mlp = mlp * self.gamma2
        return x + mlp


class FinalLayer(nn.Module):
    def __init__(self, hidden_size, patch_size, out_channels):
        super().__init__()
        self.norm_final = nn.LayerNorm(hidden_size, elementwise_affine=False, eps=1e-6)
        self.linear = nn.Linear(hidden_size, patch_size * patch_size * out_channels)
        self.adaLN_modulation = nn.Sequential(nn.SiLU(), nn.Linear(hidden_size, 2 * hidden_size))

    def forward(self, x, c):
        shift, scale = self.adaLN_modulation(c).chunk(2, dim=1)
        return self.linear(modulate(self.norm_final(x), shift, scale))


class DiT(nn.Module):
    """Predicts noise (and, with learn_sigma, the variance interpolation) from (x_t, t, y)."""

    def __init__(self, config: DiTConfig):
        super().__init__()
        self.config = config
        self.in_channels = config.in_channels
        self.out_channels = config.in_channels * 2 if config.learn_sigma else config.in_channels
        self.patch_size = config.patch_size
        self.num_classes = config.num_classes
        hidden = config.hidden_size

        self.x_embedder = PatchEmbed(config.patch_size, config.in_channels, hidden)
        self.t_embedder = TimestepEmbedder(hidden)
        self.y_embedder = LabelEmbedder(config.num_classes, hidden, config.class_dropout_prob)
        grid = config.input_size // config.patch_size
        # Fixed sin-cos position embedding; a (frozen) parameter so that checkpoints carry it.
        self.pos_embed = nn.Parameter(
            torch.from_numpy(sincos_pos_embed(hidden, grid)).float().unsqueeze(0), requires_grad=False
        )
        with_gamma = config.depth // 2  # Difffit: scales on the first half of the blocks
        self.blocks = nn.ModuleList(
            DiTBlock(hidden, config.num_heads, config.mlp_ratio, use_gamma=i < with_gamma)
            for i in range(config.depth)
        )
        self.final_layer = FinalLayer(hidden, config.patch_size, self.out_channels)
        self.initialize_weights()

    def initialize_weights(self):
        def basic_init(module):
            if isinstance(module, nn.Linear):
                nn.init.xavier_uniform_(module.weight)
                if module.bias is not None:
                    nn.init.zeros_(module.bias)

        self.apply(basic_init)
        w = self.x_embedder.proj.weight.data
        nn.init.xavier_uniform_(w.view(w.shape[0], -1))
        nn.init.zeros_(self.x_embedder.proj.bias)
        nn.init.normal_(self.y_embedder.embedding_table.weight, std=0.02)
        nn.init.normal_(self.t_embedder.mlp[0].weight, std=0.02)
        nn.init.normal_(self.t_embedder.mlp[2].weight, std=0.02)
        # adaLN-Zero: every block starts as the identity.
        for block in self.blocks:
            nn.init.zeros_(block.adaLN_modulation[-1].weight)
            nn.init.zeros_(block.adaLN_modulation[-1].bias)
        nn.init.zeros_(self.final_layer.adaLN_modulation[-1].weight)
        nn.init.zeros_(self.final_layer.adaLN_modulation[-1].bias)
        nn.init.zeros_(self.final_layer.linear.weight)
        nn.init.zeros_(self.final_layer.linear.bias)

    def unpatchify(self, x):
        c, p = self.out_channels, self.patch_size
        h = w = int(x.shape[1] ** 0.5)
        x = x.reshape(x.shape[0], h, w, p, p, c)
        return torch.einsum("nhwpqc->nchpwq", x).reshape(x.shape[0], c, h * p, w * p)

    def forward(self, x, t, y):
        x = self.x_embedder(x) + self.pos_embed
        c = self.t_embedder(t) + self.y_embedder(y)
        for block in self.blocks:
            x = block(x, c)
        return self.unpatchify(self.final_layer(x, c))

    def forward_with_guidance(self, x, t, y, guidance_scale, channels: int | None = None):
        """One batched pass for the conditional and the unconditional prediction.

        Classifier-free guidance of the first `channels` noise channels (None: all of them). The
        DiT and MinimaxDiffusion references guide the first 3 of the 4 (models.py `forward_with_cfg`:
        `eps, rest = model_out[:, :3], model_out[:, 3:]`); the other noise channels and the variance
        come from the conditional branch.
        """
        null = torch.full_like(y, self.num_classes)
        out = self.forward(torch.cat([x, x]), torch.cat([t, t]), torch.cat([y, null]))
        cond, uncond = out.chunk(2)
        guided = self.in_channels if channels is None else min(channels, self.in_channels)
        eps = uncond[:, :guided] + guidance_scale * (cond[:, :guided] - uncond[:, :guided])
        return torch.cat([eps, cond[:, guided:]], dim=1)


def sincos_pos_embed(embed_dim: int, grid_size: int) -> np.ndarray:
    """2-D sine-cosine position embedding of shape (grid_size**2, embed_dim), as in MAE/DiT."""
    grid_h = np.arange(grid_size, dtype=np.float32)
    grid = np.stack(np.meshgrid(grid_h, grid_h), axis=0).reshape(2, -1)  # w first, as in the reference

    def one_axis(dim, pos):
        omega = 1.0 / 10000 ** (np.arange(dim // 2, dtype=np.float64) / (dim / 2.0))
        out = np.einsum("m,d->md", pos.reshape(-1), omega)
        return np.concatenate([np.sin(out), np.cos(out)], axis=1)

    return np.concatenate([one_axis(embed_dim // 2, grid[0]), one_axis(embed_dim // 2, grid[1])], axis=1)


# -- Difffit: which parameters train ---------------------------------------------------------------

DIFFFIT_KEYWORDS = ("bias", "norm", "gamma", "y_embed")


def is_difffit_parameter(name: str) -> bool:
    """Biases, norm parameters, the label embedding and the gamma scales (as in the reference)."""
    return any(key in name for key in DIFFFIT_KEYWORDS)


def mark_difffit_trainable(model: nn.Module) -> list[str]:
    """Freeze everything but the Difffit set; returns the trainable parameter names."""
    names = []
    for name, param in model.named_parameters():
        param.requires_grad = is_difffit_parameter(name)
        if param.requires_grad:
            names.append(name)
    return names

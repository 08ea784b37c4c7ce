"""The built-in transformer example: an early-exit vision transformer for 8x8 digits.

It is written the way users write ViTs (LGViT-style exits on a timm-style
encoder), not in a form chosen to suit eedge: patch embedding as a conv
whose stride is the patch, a learned class token and positional embedding,
pre-norm blocks with a fused qkv Linear split into heads by
reshape/permute, scaled dot-product attention with Softmax and a GELU MLP,
and exits (LayerNorm + Linear on the class token) after chosen blocks.

``EarlyExitViT()`` with its defaults (2x2 patches, 6 blocks, exits after 2,
4 and 6) is the test zoo's model. ``build_model`` is the ``eedge demo
--model vit`` configuration: 4x4 patches (4 tokens and the class token) and
4 blocks with exits after 1, 2 and 4, so training takes seconds on one
thread and the first exit is cheap yet right on most digits. It is also a
factory `eedge export eedge.examples.vit_model:build_model` can load.
"""

from __future__ import annotations

import torch
from torch import nn

from eedge.examples.digits import NUM_CLASSES


class Attention(nn.Module):
    """timm-style multi-head self-attention: one qkv Linear, heads split by reshape."""

    def __init__(self, dim: int, heads: int) -> None:
        super().__init__()
        self.heads, self.head_dim = heads, dim // heads
        self.scale = self.head_dim ** -0.5
        self.qkv = nn.Linear(dim, dim * 3)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, n, c = x.shape
        qkv = self.qkv(x).reshape(b, n, 3, self.heads, self.head_dim).permute(2, 0, 3, 1, 4)
        q, k, v = qkv.unbind(0)
        attn = (q @ k.transpose(-2, -1)) * self.scale
        attn = attn.softmax(dim=-1)
        return self.proj((attn @ v).transpose(1, 2).reshape(b, n, c))


class Block(nn.Module):
    """Pre-norm encoder block: x + attn(ln(x)); x + mlp(ln(x)) with GELU (or ``mlp_act``)."""

    def __init__(self, dim: int, heads: int, hidden: int,
                 mlp_act: type[nn.Module] = nn.GELU) -> None:
        super().__init__()
        self.norm1, self.norm2 = nn.LayerNorm(dim), nn.LayerNorm(dim)
        self.attn = Attention(dim, heads)
        self.mlp = nn.Sequential(nn.Linear(dim, hidden), mlp_act(), nn.Linear(hidden, dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.norm1(x))
        return x + self.mlp(self.norm2(x))


class EarlyExitViT(nn.Module):
    """Patch embedding, class token, positional embedding, ``depth`` blocks, exits after ``exits``.

    ``mlp_act=nn.ReLU`` gives a variant TFLite Micro can run whole (it has no
    GELU kernel), so LayerNorm, attention and BATCH_MATMUL can be checked against it.
    """

    def __init__(self, dim: int = 32, depth: int = 6, heads: int = 2, patch: int = 2,
                 side: int = 8, exits: tuple[int, ...] = (2, 4, 6),
                 mlp_act: type[nn.Module] = nn.GELU) -> None:
        super().__init__()
        tokens = (side // patch) ** 2
        self.patch_embed = nn.Conv2d(1, dim, patch, patch)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, dim))
        self.pos_embed = nn.Parameter(torch.randn(1, tokens + 1, dim) * 0.02)
        self.blocks = nn.ModuleList(Block(dim, heads, dim * 2, mlp_act) for _ in range(depth))
        self.exit_after = exits
        self.heads = nn.ModuleList(nn.Sequential(nn.LayerNorm(dim), nn.Linear(dim, NUM_CLASSES))
                                   for _ in exits)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        x = self.patch_embed(x).flatten(2).transpose(1, 2)
        x = torch.cat([self.cls_token.expand(x.shape[0], -1, -1), x], dim=1) + self.pos_embed
        outs = []
        for depth, block in enumerate(self.blocks, start=1):
            x = block(x)
            if depth in self.exit_after:
                outs.append(self.heads[self.exit_after.index(depth)](x[:, 0]))
        return tuple(outs)


DEMO_DIM, DEMO_DEPTH, DEMO_HEADS, DEMO_PATCH, DEMO_EXITS = 32, 4, 2, 4, (1, 2, 4)


def describe() -> str:
    """The demo model in a few words, for progress messages."""
    return (f"{len(DEMO_EXITS)}-exit ViT ({DEMO_DEPTH} blocks, dim {DEMO_DIM}, {DEMO_HEADS} "
            f"heads, {DEMO_PATCH}x{DEMO_PATCH}-pixel patches)")


def build_model() -> EarlyExitViT:
    """A fresh, untrained demo ViT (load trained weights with ``--weights``)."""
    return EarlyExitViT(dim=DEMO_DIM, depth=DEMO_DEPTH, heads=DEMO_HEADS, patch=DEMO_PATCH,
                        exits=DEMO_EXITS)

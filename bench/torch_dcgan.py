"""The rawgan DCGAN written in PyTorch, layer for layer — the comparison peer of the benchmarks.

Used only by ``bench/`` (and tests); ``rawgan/`` never imports torch. The network is identical to
``rawgan.models.dcgan``:

    G: Linear 100→8192 (+b) → view (512,4,4) → BN → ReLU
       → [ConvT 5×5/2 "SAME" (+b) → BN → ReLU] ×3 (256×8×8, 128×16×16, 64×32×32)
       → ConvT 5×5/2 "SAME" (+b) → 3×64×64 → tanh
    D: Conv 5×5/2 "SAME" (+b) 3→64 → LReLU(0.2)
       → [Conv 5×5/2 "SAME" (+b) → BN → LReLU(0.2)] ×3 (128, 256, 512) → flatten 8192 → Linear → 1

TensorFlow "SAME" padding for k=5, s=2 on an even input is 1 pixel before and 2 after; PyTorch's
``padding=`` is symmetric, so the convolution is ``F.pad(x, (1, 2, 1, 2))`` + ``conv2d(padding=0)``.
The transposed convolution is the exact adjoint of that conv: ``conv_transpose2d(padding=0)``
yields (H−1)·2 + 5 = 2H + 3 pixels, of which rows/cols [1, 1 + 2H) are the SAME output (the adjoint
of padding is cropping: 1 before, 2 after).

BN: momentum 0.1, eps 1e-5 (training-mode batch statistics). Loss: BCE with logits, mean. Adam:
lr 2e-4, betas (0.5, 0.999), eps 1e-8, one per network. The train step mirrors
``DCGAN.train_step``: D on a real then a fake batch (fake = G(z) detached, computed once), one D
Adam step; then ``g_steps`` G updates with the non-saturating loss (D's parameters are not given
gradients during the G update: ``requires_grad_(False)``, as rawgan does).
"""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

SAME_PAD = (1, 2, 1, 2)          # (left, right, top, bottom) for k=5, s=2 on an even input
PRECISIONS = ("fp32", "tf32")


def set_precision(precision: str) -> dict:
    """Make torch compute like rawgan's ``--precision``: "tf32" allows TF32 tensor cores in
    matmuls and cuDNN convolutions (``torch.backends.cuda.matmul.allow_tf32``,
    ``torch.backends.cudnn.allow_tf32`` = True: PyTorch's cuDNN default), "fp32" forbids both
    (exact FP32, like rawgan's CUBLAS_COMPUTE_32F and its cuDNN engines without TENSOR_CORE /
    DOWN_CONVERT_INPUTS notes). Returns the two flags as set (to print). On a CPU both flags
    are accepted and have no effect. Raises ValueError for another precision."""
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {PRECISIONS}, got {precision!r}")
    allow = precision == "tf32"
    torch.backends.cuda.matmul.allow_tf32 = allow
    torch.backends.cudnn.allow_tf32 = allow
    return {"torch.backends.cuda.matmul.allow_tf32": torch.backends.cuda.matmul.allow_tf32,
            "torch.backends.cudnn.allow_tf32": torch.backends.cudnn.allow_tf32}


class SameConv(nn.Module):
    """Conv2d 5×5 stride 2 with TF SAME padding (1 before, 2 after) and a bias."""

    def __init__(self, cin, cout, k=5, s=2):
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, k, s, padding=0, bias=True)

    def forward(self, x):
        return self.conv(F.pad(x, SAME_PAD))


class SameConvT(nn.Module):
    """ConvTranspose2d 5×5 stride 2, the adjoint of :class:`SameConv`: H → 2H (crop 1 / 2)."""

    def __init__(self, cin, cout, k=5, s=2):
        super().__init__()
        self.conv = nn.ConvTranspose2d(cin, cout, k, s, padding=0, bias=False)
        self.bias = nn.Parameter(torch.zeros(cout))

    def forward(self, x):
        H, W = x.shape[2], x.shape[3]
        y = self.conv(x)[:, :, 1:1 + 2 * H, 1:1 + 2 * W]
        return y + self.bias.view(1, -1, 1, 1)


def _init(module, std=0.02):
    for m in module.modules():
        if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d, nn.Linear)):
            nn.init.normal_(m.weight, 0.0, std)
            if m.bias is not None:
                nn.init.zeros_(m.bias)


class Generator(nn.Module):
    def __init__(self, z_dim=100, ngf=64, channels=3):
        super().__init__()
        c = [ngf * 8, ngf * 4, ngf * 2, ngf]
        self.c0 = c[0]
        self.fc = nn.Linear(z_dim, c[0] * 16)
        self.bn0 = nn.BatchNorm2d(c[0], momentum=0.1, eps=1e-5)
        blocks = []
        for cin, cout in zip(c[:-1], c[1:]):
            blocks += [SameConvT(cin, cout), nn.BatchNorm2d(cout, momentum=0.1, eps=1e-5),
                       nn.ReLU()]
        blocks += [SameConvT(c[-1], channels), nn.Tanh()]
        self.body = nn.Sequential(*blocks)
        _init(self)

    def forward(self, z):
        h = self.fc(z).view(z.shape[0], self.c0, 4, 4)
        return self.body(F.relu(self.bn0(h)))


class Discriminator(nn.Module):
    def __init__(self, ndf=64, channels=3):
        super().__init__()
        c = [ndf, ndf * 2, ndf * 4, ndf * 8]
        layers = [SameConv(channels, c[0]), nn.LeakyReLU(0.2)]
        for cin, cout in zip(c[:-1], c[1:]):
            layers += [SameConv(cin, cout), nn.BatchNorm2d(cout, momentum=0.1, eps=1e-5),
                       nn.LeakyReLU(0.2)]
        layers += [nn.Flatten(), nn.Linear(c[-1] * 16, 1)]
        self.net = nn.Sequential(*layers)
        _init(self)

    def forward(self, x):
        return self.net(x)


class TorchDCGAN:
    """G, D, two Adams and ``train_step(x_real, z, g_steps)`` mirroring rawgan's DCGAN."""

    def __init__(self, device="cpu", z_dim=100, lr=2e-4, betas=(0.5, 0.999), eps=1e-8, seed=0):
        torch.manual_seed(seed)
        self.G = Generator(z_dim).to(device)
        self.D = Discriminator().to(device)
        self.opt_G = torch.optim.Adam(self.G.parameters(), lr=lr, betas=betas, eps=eps)
        self.opt_D = torch.optim.Adam(self.D.parameters(), lr=lr, betas=betas, eps=eps)

    def train_step(self, x_real, z, g_steps=1):
        G, D = self.G, self.D
        bce = F.binary_cross_entropy_with_logits
        # D update: real batch and fake batch in separate passes (separate BN statistics).
        self.opt_D.zero_grad(set_to_none=False)
        with torch.no_grad():
            fake = G(z)
        lr_ = D(x_real)
        l_real = bce(lr_, torch.ones_like(lr_))
        l_real.backward()
        lf = D(fake)
        l_fake = bce(lf, torch.zeros_like(lf))
        l_fake.backward()
        self.opt_D.step()
        # G updates: D's weights get no gradients.
        for p in D.parameters():
            p.requires_grad_(False)
        for _ in range(g_steps):
            self.opt_G.zero_grad(set_to_none=False)
            logits = D(G(z))
            g_loss = bce(logits, torch.ones_like(logits))
            g_loss.backward()
            self.opt_G.step()
        for p in D.parameters():
            p.requires_grad_(True)
        return {"d_loss": (l_real + l_fake).detach(), "g_loss": g_loss.detach()}

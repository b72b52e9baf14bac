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
        """rawgan's ``DCGAN.train_step`` (with its default ``reuse_g_forward``): G(z) of the D
        update also serves the first G update — the pytorch/examples DCGAN idiom (``D(fake.
        detach())`` for D, ``D(fake)`` for G) — and G's BN running statistics take both
        updates at once (momentum 1 − (1 − m)², rawgan.models.dcgan.running_updates)."""
        G, D = self.G, self.D
        bce = F.binary_cross_entropy_with_logits
        bns = [m for m in G.modules() if isinstance(m, nn.BatchNorm2d)]
        # D update: real batch and fake batch in separate passes (separate BN statistics).
        self.opt_D.zero_grad(set_to_none=False)
        saved = [m.momentum for m in bns]
        if g_steps >= 1:
            for m in bns:
                m.momentum = 1.0 - (1.0 - m.momentum) ** 2
        try:
            with torch.set_grad_enabled(g_steps >= 1):
                fake = G(z)                   # its graph is kept for the first G update
        finally:
            for m, mom in zip(bns, saved):
                m.momentum = mom
        lr_ = D(x_real)
        l_real = bce(lr_, torch.ones_like(lr_))
        l_real.backward()
        lf = D(fake.detach())
        l_fake = bce(lf, torch.zeros_like(lf))
        l_fake.backward()
        self.opt_D.step()
        # G updates: D's weights get no gradients.
        for p in D.parameters():
            p.requires_grad_(False)
        for i in range(g_steps):
            self.opt_G.zero_grad(set_to_none=False)
            logits = D(fake if i == 0 else G(z))
            g_loss = bce(logits, torch.ones_like(logits))
            g_loss.backward()
            self.opt_G.step()
        for p in D.parameters():
            p.requires_grad_(True)
        return {"d_loss": (l_real + l_fake).detach(), "g_loss": g_loss.detach()}


# ----------------------------------------------------------------------------------------------
# Training on the prepared shards, for the quality comparison (README "Quality")


def _ordered_params(net) -> list:
    """The twin's parameters in rawgan's order: per layer weight then bias (SameConvT registers
    its bias before its inner conv, so ``parameters()`` order would differ), BN gamma then beta."""
    out = []
    for m in net.modules():
        if isinstance(m, SameConvT):
            out += [m.conv.weight, m.bias]
        elif isinstance(m, SameConv):
            out += [m.conv.weight, m.conv.bias]
        elif isinstance(m, (nn.Linear, nn.BatchNorm2d)):
            out += [m.weight, m.bias]
    return out


def to_rawgan(twin: TorchDCGAN, model) -> None:
    """Copy the twin's G and D (parameters and BN running statistics) into a rawgan ``DCGAN``.

    Both frameworks register parameters in the same order (weight then bias per layer, BN
    gamma then beta) with the same layouts: Linear (out, in), Conv2d (K, C, R, S),
    ConvTranspose2d (C_in, C_out, R, S). Raises ValueError on a count or shape mismatch. The
    running variance is copied as is (torch keeps the unbiased one; eval mode uses it as stored
    in both frameworks, so G(z) is the same function)."""
    pairs = ((twin.G, model.G), (twin.D, model.D))
    for tnet, rnet in pairs:
        tparams = _ordered_params(tnet)
        rparams = [p for _, p, _ in rnet.named_params()]
        tbufs = [b for n, b in tnet.named_buffers() if n.endswith(("running_mean", "running_var"))]
        rbufs = [b for _, b in rnet.named_buffers()]
        if len(tparams) != len(rparams) or len(tbufs) != len(rbufs):
            raise ValueError("the torch twin and the rawgan model have different layer lists")
        for t, r in zip(tparams + tbufs, rparams + rbufs):
            if tuple(t.shape) != tuple(r.shape):
                raise ValueError(f"shape mismatch: torch {tuple(t.shape)} vs rawgan {r.shape}")
            r[...] = model.B.asarray(t.detach().cpu().numpy())


def train_main(argv=None) -> int:
    """``python bench/torch_dcgan.py --data-dir DIR --out RUN --max-steps N``: train the twin on
    rawgan's prepared shards with rawgan's batch order (BatchLoader, same seed) and rawgan's z
    stream (Philox, uniform(-1, 1), the first 64 draws being the fixed sample z) — only the
    initial weights differ (torch's RNG). Writes RUN/metrics.jsonl, RUN/samples/*.png (G(fixed z)
    in eval mode) and RUN/checkpoints/ckpt_SSSSSS.npz in rawgan's format (G and D converted by
    :func:`to_rawgan`, checked to give the same G(z); fresh Adam state), so ``rawgan.sample`` and
    ``rawgan.eval`` read it exactly as they read a rawgan run."""
    import argparse
    import json
    import os
    import sys
    import time
    from pathlib import Path

    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    import numpy as np
    from rawgan import checkpoint as ckpt_io
    from rawgan.argtypes import nonnegative_int, positive_int
    from rawgan.backend import PhiloxState as Philox, get_backend
    from rawgan.data import BatchLoader, DataError, ShardDataset, ensure_prepared, save_grid
    from rawgan.models.dcgan import DCGAN

    p = argparse.ArgumentParser(prog="python bench/torch_dcgan.py",
                                description="Train the PyTorch twin on rawgan's prepared shards.")
    p.add_argument("--data", choices=("celeba", "folder"), default="celeba")
    p.add_argument("--data-dir", required=True, help="raw images (as for rawgan.train)")
    p.add_argument("--prepared-dir", help="prepared shards (default: rawgan's cache folder)")
    p.add_argument("--out", required=True, help="run folder (must not hold checkpoints yet)")
    p.add_argument("--max-steps", type=positive_int, required=True)
    p.add_argument("--g-steps", type=positive_int, default=2)
    p.add_argument("--batch-size", type=positive_int, default=64)
    p.add_argument("--seed", type=nonnegative_int, default=0)
    p.add_argument("--checkpoint-every", type=positive_int, default=50)
    p.add_argument("--log-every", type=positive_int, default=10)
    p.add_argument("--threads", type=positive_int, default=os.cpu_count() or 1)
    args = p.parse_args(argv)

    out = Path(args.out)
    if ckpt_io.list_checkpoints(out / "checkpoints"):
        print(f"error: --out {out} already holds checkpoints", file=sys.stderr)
        return 2
    try:
        dataset = ShardDataset(ensure_prepared(args.data, Path(args.data_dir),
                                               out_dir=args.prepared_dir))
        loader = BatchLoader(dataset, args.batch_size, seed=args.seed)
    except DataError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    torch.set_num_threads(args.threads)
    B = get_backend("numpy")
    z_gen = Philox(args.seed)
    sample_z = B.uniform(z_gen, (64, 100), -1.0, 1.0)          # as rawgan.train: first draw
    twin = TorchDCGAN(seed=args.seed)
    model = DCGAN(B, seed=args.seed)
    (out / "samples").mkdir(parents=True, exist_ok=True)
    metrics_path = out / "metrics.jsonl"

    def snapshot(step, epoch, batch):
        twin.G.eval()
        with torch.no_grad():
            images = twin.G(torch.from_numpy(np.asarray(sample_z))).numpy()
        twin.G.train()
        save_grid(images, out / "samples" / f"train_{epoch:02d}_{step:06d}.png")
        to_rawgan(twin, model)
        ours = np.asarray(model.sample(sample_z, eval_mode=True))
        diff = float(np.abs(ours - images).max())
        if diff > 1e-3:
            raise RuntimeError(f"converted G differs from the torch G by {diff}")
        ckpt_io.save_checkpoint(ckpt_io.checkpoint_path(out / "checkpoints", step), model, {
            "step": step, "epoch": epoch, "batch": batch, "source": "bench/torch_dcgan.py",
            "config": {"data": args.data, "data_dir": str(Path(args.data_dir).absolute()),
                       "g_steps": args.g_steps, "batch_size": args.batch_size,
                       "seed": args.seed, "z_dim": 100, "z_dist": "uniform", "ngf": 64,
                       "ndf": 64, "lr": 2e-4, "beta1": 0.5, "max_steps": args.max_steps},
            "sample_z": np.asarray(sample_z), "torch_g_vs_rawgan_g_max_abs": diff})

    step, epoch, t_last = 0, 0, time.time()
    snapshot(0, 0, 0)
    while step < args.max_steps:
        for x in loader.epoch_batches(epoch):
            z = B.uniform(z_gen, (x.shape[0], 100), -1.0, 1.0)
            m = twin.train_step(torch.from_numpy(x), torch.from_numpy(np.asarray(z)),
                                args.g_steps)
            step += 1
            batch = step % loader.batches_per_epoch
            if step % args.log_every == 0:
                now = time.time()
                rec = {"step": step, "epoch": epoch, "sec_per_step":
                       round((now - t_last) / args.log_every, 4),
                       "d_loss": float(m["d_loss"]), "g_loss": float(m["g_loss"])}
                t_last = now
                with open(metrics_path, "a") as f:
                    f.write(json.dumps(rec) + "\n")
                print(json.dumps(rec), flush=True)
            if step % args.checkpoint_every == 0 or step == args.max_steps:
                snapshot(step, epoch + (batch == 0), batch)
            if step >= args.max_steps:
                break
        epoch += 1
    print(f"done: {step} steps; checkpoints in {out / 'checkpoints'}", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(train_main())

"""Loss curves of a training run: ``python bench/plot_metrics.py RUN_DIR/metrics.jsonl --out loss.png``.

Top panel: d_loss, g_loss (and d_loss_real / d_loss_fake thinner). Bottom panel: mean D(x) and
mean D(G(z)) — a healthy DCGAN keeps D(x) above D(G(z)) without D(G(z)) collapsing to 0 (the classic
failure: D loss -> 0 while G loss climbs). A third panel shows KID × 1000 (± std over subsets)
when the run has KID records (``rawgan.train --eval-every N``). Records with null (NaN) values are
shown as gaps. Records of one step are merged (a loss record and a KID record share a step); if a
run was resumed, the latest value of each key wins.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


def read_metrics(path) -> list[dict]:
    """metrics.jsonl -> records sorted by step (one per step, the last one written wins).
    Raises SystemExit with a message for a missing file or one with no readable record."""
    path = Path(path)
    if not path.is_file():
        sys.exit(f"error: {path} does not exist")
    by_step = {}
    for line in path.read_text().splitlines():
        try:
            rec = json.loads(line)
            by_step.setdefault(int(rec["step"]), {}).update(rec)
        except (ValueError, KeyError, TypeError):
            continue
    if not by_step:
        sys.exit(f"error: {path} has no metrics records")
    return [by_step[s] for s in sorted(by_step)]


def plot(records: list[dict], out, title: str | None = None) -> Path:
    """Two-panel PNG (losses; D outputs), three with KID records, of ``records`` at ``out``;
    returns the path."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    def series(key):
        """(steps, values) of the records holding ``key``; a null value is a gap (NaN)."""
        have = [r for r in records if key in r]
        return ([r["step"] for r in have],
                [float("nan") if r[key] is None else r[key] for r in have])

    kid = [r for r in records if r.get("kid") is not None]
    fig, axes = plt.subplots(3 if kid else 2, 1, figsize=(7, 7.5 if kid else 5.5), sharex=True,
                             gridspec_kw={"height_ratios": [3, 2, 2] if kid else [3, 2]})
    ax1, ax2 = axes[0], axes[1]
    if kid:
        ks = [r["step"] for r in kid]
        mean = [1000 * r["kid"] for r in kid]
        std = [1000 * (r.get("kid_std") or 0.0) for r in kid]
        axes[2].errorbar(ks, mean, yerr=std, color="tab:purple", marker="o", ms=3, capsize=2,
                         label=f"KID x1000 ({kid[-1].get('kid_n', '?')} samples)")
        axes[2].set_ylabel("KID x1000")
        axes[2].grid(alpha=0.3)
        axes[2].legend(loc="upper right", fontsize=8)
    ax1.plot(*series("d_loss"), label="d_loss", color="tab:blue", lw=1.8)
    ax1.plot(*series("g_loss"), label="g_loss", color="tab:orange", lw=1.8)
    ax1.plot(*series("d_loss_real"), label="d_loss_real", color="tab:blue", lw=0.8, ls="--")
    ax1.plot(*series("d_loss_fake"), label="d_loss_fake", color="tab:blue", lw=0.8, ls=":")
    ax1.set_ylabel("loss")
    ax1.grid(alpha=0.3)
    ax1.legend(loc="upper right", fontsize=8)
    ax2.plot(*series("d_real"), label="D(x)", color="tab:green")
    ax2.plot(*series("d_fake"), label="D(G(z))", color="tab:red")
    ax2.set_ylim(0, 1)
    axes[-1].set_xlabel("step")
    ax2.set_ylabel("mean D output")
    ax2.grid(alpha=0.3)
    ax2.legend(loc="upper right", fontsize=8)
    if title:
        ax1.set_title(title)
    fig.tight_layout()
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    if not out.suffix:                  # matplotlib would add ".png" itself: say the real name
        out = out.with_name(out.name + ".png")
    fig.savefig(out, dpi=90)
    plt.close(fig)
    return out


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("metrics", help="RUN_DIR/metrics.jsonl")
    p.add_argument("--out", default="loss.png", help="PNG to write (default: loss.png)")
    p.add_argument("--title", help="plot title")
    args = p.parse_args(argv)
    path = plot(read_metrics(args.metrics), args.out, args.title)
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

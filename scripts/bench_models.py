#!/usr/bin/env python3
"""Benchmark the dasp models on CPU: parameters, latency, one training step's time and memory.

Measures, with ``torch.set_num_threads(--threads)`` (default 2):

* parameter counts and forward FLOPs (``torch.utils.flop_counter``, one sample at 96 x 320) of
  DepthNet (resnet18, resnet50, mobilenet_v3_large), PoseNet (resnet18), the SPLB
  Discriminator (full and the three ablations) and RNW's PatchDiscriminator;
* inference latency, batch 1, ``--warmup`` untimed then ``--runs`` timed forwards
  (``torch.inference_mode``, eval mode), p50 / p90, for DepthNet x3 and PoseNet at
  ``--height x --width`` (192 x 640) and the Discriminator on a T=3 stack at 192 x 640 and
  96 x 320; the discriminator is a training-time model, so its train-mode forward + backward
  time is reported too;
* one full DASP night training step at ``--train-batch`` (4) and 192 x 640, in a fresh
  process so that its memory high-water mark is its own: DepthNet on all 3 frames of the clip
  (the temporal stack and the 3D loss need every frame's depth), PoseNet for the 2 sources,
  ``dasp_core.geometry.warp_image`` at 4 scales, the ``dasp_core.losses`` terms (photometric
  min-reprojection with automask, smoothness, 3D consistency, LSGAN generator loss; a plain
  inline L1 / LSGAN if the module is missing — the report says which), discriminator forward on
  the ``[B, 3, 1, H, W]`` fake stack, backward and Adam step of depth + pose; then the frozen day
  teacher on a day clip and the discriminator's own step (real + fake stacks, backward, Adam).
  Memory is the process's peak resident set size from ``resource.getrusage(RUSAGE_SELF)
  .ru_maxrss`` and its growth over the RSS just before the first step (``/proc/self/status``
  VmRSS); torch's CPU allocator has no peak counter and ``tracemalloc`` cannot see it.

Writes a Markdown report to ``--out`` (default ``docs/models.md``): if the file has the markers
``<!-- bench_models:begin -->`` / ``<!-- bench_models:end -->`` only the text between them is
replaced, otherwise the whole file is written.

Usage::

    .venv/bin/python scripts/bench_models.py                  # full run (quiet machine!)
    .venv/bin/python scripts/bench_models.py --quick --out /tmp/bench.md   # smoke test
"""

from __future__ import annotations

import argparse
import datetime
import json
import logging
import os
import platform
import resource
import shlex
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Tuple

import torch

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:  # run from a checkout without installing
    sys.path.insert(0, str(REPO))

from dasp_core.models import (DepthNet, DepthNetConfig, Discriminator,  # noqa: E402
                              DiscriminatorConfig, PatchDiscriminator, PoseNet, PoseNetConfig,
                              mean_normalise_stack)

LOG = logging.getLogger("bench_models")
BEGIN = "<!-- bench_models:begin -->"
END = "<!-- bench_models:end -->"


# ----------------------------------------------------------------------------- helpers

def cpu_model() -> str:
    """CPU model name from /proc/cpuinfo (Linux), else platform.processor()."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def rss_kib() -> int:
    """Current resident set size in KiB (Linux /proc), 0 where unavailable."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def git_rev() -> str:
    try:
        out = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO,
                             capture_output=True, text=True, timeout=5)
        dirty = subprocess.run(["git", "status", "--porcelain"], cwd=REPO,
                               capture_output=True, text=True, timeout=5).stdout.strip()
        return (out.stdout.strip() or "unknown") + (" (uncommitted changes)" if dirty else "")
    except Exception:
        return "unknown"


def count_params(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def percentile(values: List[float], q: float) -> float:
    """Linear-interpolated percentile, q in [0, 100]."""
    s = sorted(values)
    if len(s) == 1:
        return s[0]
    pos = (len(s) - 1) * q / 100.0
    lo = int(pos)
    hi = min(lo + 1, len(s) - 1)
    return s[lo] + (s[hi] - s[lo]) * (pos - lo)


def time_calls(fn: Callable[[], Any], warmup: int, runs: int) -> List[float]:
    """Seconds per call of ``fn`` for ``runs`` calls after ``warmup`` untimed calls."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return times


def fmt_ms(seconds: float) -> str:
    return f"{seconds * 1000:.1f}"


def fmt_params(n: int) -> str:
    return f"{n / 1e6:.2f} M"


# ----------------------------------------------------------------------------- model set

def disc_configs() -> List[Tuple[str, DiscriminatorConfig]]:
    return [("Discriminator (4 SPLB, STLM + ASLM)", DiscriminatorConfig()),
            ("Discriminator, use_stlm=False", DiscriminatorConfig(use_stlm=False)),
            ("Discriminator, use_aslm=False", DiscriminatorConfig(use_aslm=False)),
            ("Discriminator, both off", DiscriminatorConfig(use_stlm=False, use_aslm=False))]


def forward_gflop(model: torch.nn.Module, *inputs: torch.Tensor) -> float:
    """Forward FLOPs (GFLOP, a multiply-add counts 2) from ``torch.utils.flop_counter``."""
    from torch.utils.flop_counter import FlopCounterMode
    model.eval()
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        model(*inputs)
    return counter.get_total_flops() / 1e9


def param_table(height: int, width: int) -> List[Tuple[str, int, float, str]]:
    """(model, parameters, forward GFLOP for one sample, that sample's shape) rows."""
    H, W = height, width
    img = torch.rand(1, 3, H, W)
    rows: List[Tuple[str, int, float, str]] = []
    for enc in ("resnet18", "resnet50", "mobilenet_v3_large"):
        m = DepthNet(DepthNetConfig(encoder=enc))
        rows.append((f"DepthNet {enc}", count_params(m), forward_gflop(m, img),
                     f"[1,3,{H},{W}]"))
    m = PoseNet(PoseNetConfig())
    rows.append(("PoseNet resnet18", count_params(m), forward_gflop(m, img, img),
                 f"2 x [1,3,{H},{W}]"))
    stack = torch.rand(1, 3, 1, H, W) + 0.5
    for name, cfg in disc_configs():
        m = Discriminator(cfg)
        rows.append((name, count_params(m), forward_gflop(m, stack), f"[1,3,1,{H},{W}]"))
    m = PatchDiscriminator()
    rows.append(("PatchDiscriminator (RNW, 3 layers)", count_params(m),
                 forward_gflop(m, stack[:, 0]), f"[1,1,{H},{W}]"))
    return rows


def latency_table(args: argparse.Namespace) -> List[Dict[str, Any]]:
    """Inference (and for discriminators, training) latency rows at batch 1."""
    H, W = args.height, args.width
    h2, w2 = args.disc_small_height, args.disc_small_width
    cases: List[Tuple[str, str, Callable[[], torch.nn.Module], Tuple[torch.Tensor, ...], bool]] = []
    for enc in ("resnet18", "resnet50", "mobilenet_v3_large"):
        cases.append((f"DepthNet {enc}", f"[1,3,{H},{W}]",
                      lambda e=enc: DepthNet(DepthNetConfig(encoder=e)),
                      (torch.rand(1, 3, H, W),), False))
    cases.append(("PoseNet resnet18", f"2 x [1,3,{H},{W}]", lambda: PoseNet(PoseNetConfig()),
                  (torch.rand(1, 3, H, W), torch.rand(1, 3, H, W)), False))
    for (hh, ww) in ((H, W), (h2, w2)):
        cases.append(("Discriminator (STLM + ASLM)", f"[1,3,1,{hh},{ww}]",
                      lambda: Discriminator(DiscriminatorConfig()),
                      (torch.rand(1, 3, 1, hh, ww) + 0.5,), True))
    cases.append(("PatchDiscriminator (RNW)", f"[1,1,{H},{W}]", lambda: PatchDiscriminator(),
                  (torch.rand(1, 1, H, W) + 0.5,), True))

    rows = []
    try:
        from tqdm import tqdm
        it = tqdm(cases, desc="latency", unit="model")
    except ImportError:  # pragma: no cover - tqdm is a dependency
        it = cases
    for name, shape, build, inputs, train_too in it:
        torch.manual_seed(0)
        model = build().eval()
        with torch.inference_mode():
            times = time_calls(lambda: model(*inputs), args.warmup, args.runs)
        row = {"model": name, "input": shape, "p50": statistics.median(times),
               "p90": percentile(times, 90), "runs": len(times), "train_p50": None,
               "train_p90": None}
        if train_too:
            model.train()

            def fwd_bwd() -> None:
                model.zero_grad(set_to_none=True)
                ((model(*inputs) - 1.0) ** 2).mean().backward()
            ttimes = time_calls(fwd_bwd, args.warmup, args.runs)
            row["train_p50"] = statistics.median(ttimes)
            row["train_p90"] = percentile(ttimes, 90)
        LOG.info("%s %s: p50 %.1f ms", name, shape, row["p50"] * 1000)
        rows.append(row)
        del model
    return rows


# ----------------------------------------------------------------------------- training step

def _losses() -> Dict[str, Any]:
    """The dasp_core.losses functions that exist, with inline fallbacks; records which."""
    used: Dict[str, Any] = {}
    try:
        from dasp_core.losses.photometric import min_reprojection_loss
        used["photometric"] = ("dasp_core.losses.photometric.min_reprojection_loss "
                               "(SSIM 0.85 + L1, automask)", min_reprojection_loss)
    except ImportError:
        def inline_l1(target, warped, sources, valid=None):
            err = torch.cat([(w - target).abs().mean(1, keepdim=True) for w in warped], 1)
            m = err.min(1, keepdim=True)[0]
            return m.mean(), m, torch.ones_like(m, dtype=torch.bool)
        used["photometric"] = ("inline plain L1 minimum over sources (no SSIM, no automask; "
                               "dasp_core.losses.photometric missing)", inline_l1)
    try:
        from dasp_core.losses.smoothness import edge_aware_smoothness
        used["smoothness"] = ("dasp_core.losses.smoothness.edge_aware_smoothness",
                              edge_aware_smoothness)
    except ImportError:
        used["smoothness"] = ("skipped (dasp_core.losses.smoothness missing)", None)
    try:
        from dasp_core.losses.consistency3d import consistency_3d_loss
        used["consistency3d"] = ("dasp_core.losses.consistency3d.consistency_3d_loss",
                                 consistency_3d_loss)
    except ImportError:
        used["consistency3d"] = ("skipped (dasp_core.losses.consistency3d missing)", None)
    try:
        from dasp_core.losses.adversarial import discriminator_loss, generator_loss
        used["gan"] = ("dasp_core.losses.adversarial (lsgan)", (generator_loss, discriminator_loss))
    except ImportError:
        def g_loss(fake):
            return ((fake - 1) ** 2).mean()

        def d_loss(real, fake):
            return 0.5 * (((real - 1) ** 2).mean() + (fake ** 2).mean())
        used["gan"] = ("inline LSGAN (dasp_core.losses.adversarial missing)", (g_loss, d_loss))
    return used


def _smooth_images(n: int, H: int, W: int, gen: torch.Generator) -> torch.Tensor:
    """Images with image-like spatial structure: low-resolution noise upsampled + fine noise."""
    coarse = torch.rand(n, 3, max(H // 16, 2), max(W // 16, 2), generator=gen)
    img = torch.nn.functional.interpolate(coarse, size=(H, W), mode="bilinear",
                                          align_corners=False)
    return (0.8 * img + 0.2 * torch.rand(n, 3, H, W, generator=gen)).clamp(0, 1)


def train_step_worker(spec: Dict[str, Any]) -> Dict[str, Any]:
    """Runs in a fresh process: builds the models, times ``steps`` training steps after
    ``warmup`` untimed ones, returns times and memory."""
    from dasp_core.geometry import disp_to_depth, pose_vec_to_matrix, warp_image

    torch.set_num_threads(spec["threads"])
    torch.manual_seed(0)
    B, H, W = spec["batch"], spec["height"], spec["width"]
    min_d, max_d = 0.1, 100.0
    losses = _losses()
    photometric = losses["photometric"][1]
    smoothness = losses["smoothness"][1]
    consistency = losses["consistency3d"][1]
    g_loss_fn, d_loss_fn = losses["gan"][1]

    depth = DepthNet(DepthNetConfig(encoder=spec["depth_encoder"])).train()
    teacher = DepthNet(DepthNetConfig(encoder=spec["depth_encoder"])).eval().requires_grad_(False)
    pose = PoseNet(PoseNetConfig()).train()
    disc = Discriminator(DiscriminatorConfig()).train()
    opt_g = torch.optim.Adam(list(depth.parameters()) + list(pose.parameters()), lr=1e-4)
    opt_d = torch.optim.Adam(disc.parameters(), lr=1e-4)

    gen = torch.Generator().manual_seed(0)
    night = _smooth_images(B * 3, H, W, gen).view(B, 3, 3, H, W)
    day = _smooth_images(B * 3, H, W, gen).view(B, 3, 3, H, W)
    f = 0.58 * W
    K = torch.tensor([[f, 0.0, W / 2 - 0.5], [0.0, f * 1.0, H / 2 - 0.5], [0.0, 0.0, 1.0]])
    K = K.expand(B, 3, 3).contiguous()
    w_smooth, w_3d, w_gan = 1e-3, 0.1, 2.5e-4

    def step() -> None:
        target = night[:, 1]
        sources = [night[:, 0], night[:, 2]]
        disps = depth(night.flatten(0, 1))                    # per scale: [B*3, 1, h, w]
        T = [pose_vec_to_matrix(*pose(target, s)) for s in sources]
        loss = night.new_zeros(())
        depth_full = []
        for s, disp in enumerate(disps):
            d3 = disp.unflatten(0, (B, 3))                    # [B, 3, 1, h, w]
            up = torch.nn.functional.interpolate(d3.flatten(0, 1), size=(H, W),
                                                 mode="bilinear", align_corners=False)
            _, dep = disp_to_depth(up, min_d, max_d)
            dep = dep.unflatten(0, (B, 3))
            if s == 0:
                depth_full = [dep[:, i] for i in range(3)]
            warped, valid = zip(*[warp_image(src, dep[:, 1], Ti, K)
                                  for src, Ti in zip(sources, T)])
            loss = loss + photometric(target, list(warped), sources, list(valid))[0] / len(disps)
            if smoothness is not None:
                img_s = torch.nn.functional.interpolate(target, size=disp.shape[-2:],
                                                        mode="bilinear", align_corners=False)
                loss = loss + w_smooth * smoothness(d3[:, 1], img_s) / (2 ** s) / len(disps)
        if consistency is not None:
            for i, Ti in zip((0, 2), T):
                loss = loss + w_3d * consistency(depth_full[1], depth_full[i], Ti, K)[0] / 2
        fake = mean_normalise_stack(disps[0].unflatten(0, (B, 3)))   # [B, 3, 1, H, W]
        disc.requires_grad_(False)  # the generator step must not move the discriminator
        loss = loss + w_gan * g_loss_fn(disc(fake))
        disc.requires_grad_(True)
        opt_g.zero_grad(set_to_none=True)
        loss.backward()
        opt_g.step()
        with torch.no_grad():
            real = mean_normalise_stack(teacher(day.flatten(0, 1))[0].unflatten(0, (B, 3)))
        d_loss = d_loss_fn(disc(real), disc(fake.detach()))
        opt_d.zero_grad(set_to_none=True)
        d_loss.backward()
        opt_d.step()

    rss_before = rss_kib()
    maxrss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    times = time_calls(step, spec["warmup"], spec["steps"])
    maxrss_after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return {"times": times, "rss_before_kib": rss_before, "maxrss_before_kib": maxrss_before,
            "maxrss_after_kib": maxrss_after,
            "losses": {k: v[0] for k, v in losses.items()},
            "params_g": count_params(depth) + count_params(pose),
            "params_d": count_params(disc)}


def run_train_step(args: argparse.Namespace) -> Dict[str, Any]:
    """Run :func:`train_step_worker` in a fresh interpreter and return its JSON result."""
    spec = {"threads": args.threads, "batch": args.train_batch, "height": args.height,
            "width": args.width, "depth_encoder": args.depth_encoder,
            "warmup": args.train_warmup, "steps": args.train_steps}
    LOG.info("training step in a fresh process: %s", spec)
    proc = subprocess.run([sys.executable, str(Path(__file__).resolve()),
                           "--worker-train-step", json.dumps(spec)],
                          capture_output=True, text=True, cwd=REPO)
    if proc.returncode != 0:
        raise RuntimeError(f"training-step worker failed (exit {proc.returncode}):\n"
                           f"{proc.stderr[-4000:]}")
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    result["spec"] = spec
    return result


# ----------------------------------------------------------------------------- report

def machine_info(args: argparse.Namespace) -> Dict[str, str]:
    import torchvision
    try:
        load = " / ".join(f"{x:.2f}" for x in os.getloadavg())
    except OSError:
        load = "unknown"
    return {"CPU": cpu_model(), "logical CPUs": str(os.cpu_count()),
            "torch threads": str(torch.get_num_threads()),
            "torch": torch.__version__, "torchvision": torchvision.__version__,
            "python": platform.python_version(), "OS": platform.platform(),
            "load average (1/5/15 min) at start": load,
            "date": datetime.datetime.now().astimezone().strftime("%Y-%m-%d %H:%M %Z"),
            "git": git_rev()}


def command_line() -> str:
    exe = sys.executable
    try:
        rel = os.path.relpath(exe, Path.cwd())
        if not rel.startswith(".."):
            exe = rel
    except ValueError:
        pass
    return shlex.join([exe] + sys.argv)


def render(args: argparse.Namespace, machine: Dict[str, str],
           params: List[Tuple[str, int, float, str]],
           latency: List[Dict[str, Any]], train: Optional[Dict[str, Any]]) -> str:
    out: List[str] = []
    title = "Model benchmark" + (" (QUICK SMOKE RUN: tiny sizes, not a measurement)"
                                 if args.quick else "")
    out.append(f"### {title}\n")
    out.append(f"Written by `scripts/bench_models.py`; do not edit by hand. Command:\n")
    out.append(f"```\n{command_line()}\n```\n")
    out.append("| Machine | |\n|---|---|")
    out += [f"| {k} | {v} |" for k, v in machine.items()]
    out.append("")
    out.append("#### Parameters and forward FLOPs\n")
    out.append("FLOPs from `torch.utils.flop_counter` (multiply-add = 2), one sample.\n")
    out.append("| Model | Parameters | fp32 size | Input | forward GFLOP |\n"
               "|---|---:|---:|---|---:|")
    out += [f"| {n} | {fmt_params(c)} | {c * 4 / 2 ** 20:.1f} MiB | `{shape}` | {g:.2f} |"
            for n, c, g, shape in params]
    out.append("")
    out.append(f"#### CPU latency, batch 1, {args.threads} threads\n")
    out.append(f"Inference: eval mode, `torch.inference_mode`, {args.warmup} warm-up + "
               f"{args.runs} timed runs. Discriminators are training-time models, so their "
               "train-mode forward + backward (LSGAN loss) is timed as well.\n")
    out.append("| Model | Input | p50 ms | p90 ms | train fwd+bwd p50 ms | train p90 ms |\n"
               "|---|---|---:|---:|---:|---:|")
    for r in latency:
        tp50 = fmt_ms(r["train_p50"]) if r["train_p50"] is not None else "–"
        tp90 = fmt_ms(r["train_p90"]) if r["train_p90"] is not None else "–"
        out.append(f"| {r['model']} | `{r['input']}` | {fmt_ms(r['p50'])} | {fmt_ms(r['p90'])} "
                   f"| {tp50} | {tp90} |")
    out.append("")
    if train is not None:
        s = train["spec"]
        t = train["times"]
        out.append(f"#### One DASP night training step, batch {s['batch']}, "
                   f"{s['height']}x{s['width']}, {s['threads']} threads\n")
        out.append(f"DepthNet {s['depth_encoder']} on all 3 frames (B x 3 images, 4 scales), "
                   "PoseNet resnet18 for 2 sources, `warp_image` at 4 scales, losses below, "
                   "Discriminator on the `[B,3,1,H,W]` fake stack (frozen), backward, Adam on "
                   "depth + pose; then the frozen day teacher on a day clip and the "
                   "discriminator step (real + fake, backward, Adam). "
                   f"{s['warmup']} warm-up + {s['steps']} timed steps in a fresh process.\n")
        out.append("| Loss term | Implementation |\n|---|---|")
        out += [f"| {k} | {v} |" for k, v in train["losses"].items()]
        out.append("")
        peak = train["maxrss_after_kib"] / 1024
        grow = (train["maxrss_after_kib"] - train["rss_before_kib"]) / 1024
        out.append("| Measure | Value |\n|---|---:|")
        out.append(f"| step time p50 | {statistics.median(t):.2f} s |")
        out.append(f"| step time min / max | {min(t):.2f} / {max(t):.2f} s |")
        out.append(f"| peak RSS of the process (`ru_maxrss`) | {peak:.0f} MiB |")
        out.append(f"| peak RSS − RSS before the first step | {grow:.0f} MiB |")
        out.append(f"| trainable parameters (depth + pose / discriminator) | "
                   f"{fmt_params(train['params_g'])} / {fmt_params(train['params_d'])} |")
        out.append("")
        out.append("Memory: `resource.getrusage(RUSAGE_SELF).ru_maxrss` (the process's resident "
                   "high-water mark, includes the Python interpreter, torch and the models); "
                   "the second row subtracts the VmRSS read just before the first step, i.e. "
                   "activations, gradients, Adam state and allocator caching of the step.\n")
    return "\n".join(out)


def write_report(path: Path, section: str) -> None:
    """Replace the marked section of ``path`` or write the whole file."""
    block = f"{BEGIN}\n{section}\n{END}"
    if path.exists():
        text = path.read_text()
        if BEGIN in text and END in text and text.index(BEGIN) < text.index(END):
            new = text[:text.index(BEGIN)] + block + text[text.index(END) + len(END):]
            path.write_text(new)
            return
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("# dasp models: benchmark\n\n" + block + "\n")


# ----------------------------------------------------------------------------- main

def parse_args(argv: Optional[List[str]] = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", type=Path, default=REPO / "docs" / "models.md",
                   help="Markdown report (default: docs/models.md; its marked section only)")
    p.add_argument("--quick", action="store_true",
                   help="smoke run: tiny sizes, 1 iteration each (numbers meaningless)")
    p.add_argument("--threads", type=int, default=2, help="torch CPU threads (default 2)")
    p.add_argument("--height", type=int, default=192)
    p.add_argument("--width", type=int, default=640)
    p.add_argument("--disc-small-height", type=int, default=96)
    p.add_argument("--disc-small-width", type=int, default=320)
    p.add_argument("--flops-height", type=int, default=96,
                   help="input height of the FLOP column (default 96)")
    p.add_argument("--flops-width", type=int, default=320,
                   help="input width of the FLOP column (default 320)")
    p.add_argument("--warmup", type=int, default=3, help="untimed runs per model")
    p.add_argument("--runs", type=int, default=20, help="timed runs per model")
    p.add_argument("--train-batch", type=int, default=4)
    p.add_argument("--train-warmup", type=int, default=1)
    p.add_argument("--train-steps", type=int, default=3)
    p.add_argument("--depth-encoder", default="resnet18",
                   choices=("resnet18", "resnet34", "resnet50", "mobilenet_v3_large"),
                   help="DepthNet encoder of the training step (default resnet18)")
    p.add_argument("--skip-train", action="store_true", help="skip the training-step benchmark")
    p.add_argument("--worker-train-step", metavar="JSON", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.quick:
        args.height, args.width = 64, 96
        args.disc_small_height, args.disc_small_width = 32, 64
        args.flops_height, args.flops_width = 64, 96
        args.warmup, args.runs = 0, 1
        args.train_batch, args.train_warmup, args.train_steps = 2, 0, 1
    for name, least in (("height", 64), ("width", 64), ("flops_height", 64),
                        ("flops_width", 64), ("disc_small_height", 32), ("disc_small_width", 32)):
        v = getattr(args, name)
        if v < least or v % 32:
            p.error(f"--{name.replace('_', '-')} = {v}: must be a multiple of 32, "
                    f"at least {least}")
    for name in ("threads", "runs", "train_batch", "train_steps"):
        if getattr(args, name) < 1:
            p.error(f"--{name.replace('_', '-')} must be at least 1")
    for name in ("warmup", "train_warmup"):
        if getattr(args, name) < 0:
            p.error(f"--{name.replace('_', '-')} must be at least 0")
    return args


def main(argv: Optional[List[str]] = None) -> int:
    args = parse_args(argv)
    if args.worker_train_step:
        print(json.dumps(train_step_worker(json.loads(args.worker_train_step))))
        return 0
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    torch.set_num_threads(args.threads)
    machine = machine_info(args)
    LOG.info("machine: %s", machine)
    LOG.info("counting parameters")
    params = param_table(args.flops_height, args.flops_width)
    latency = latency_table(args)
    train = None if args.skip_train else run_train_step(args)
    write_report(args.out, render(args, machine, params, latency, train))
    LOG.info("report written to %s", args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())

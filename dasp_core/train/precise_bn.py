"""BatchNorm statistics that match the trained network (precise-BN, Wu & Johnson 2021).

Training normalises each BatchNorm layer with the statistics of the current batch; evaluation
uses running averages. From scratch, with small batches and MobileNetV3's momentum of 0.01, the
running averages lag far behind the weights: measured on the synthetic world, train-mode and
eval-mode log-depth differed by 0.67 and the scores of the eval-mode network described a
network nobody trained. :func:`recompute_bn_stats` replaces the running averages by the exact
population mean and variance of the current weights over a number of training batches;
:func:`train_eval_gap` measures what is left, so validation can log it.
"""

from __future__ import annotations

from typing import Callable, Iterable, List, Optional

import torch
import torch.nn as nn

__all__ = ["bn_layers", "recompute_bn_stats", "train_eval_gap"]

_BN = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d, nn.SyncBatchNorm)


def bn_layers(model: nn.Module) -> List[nn.modules.batchnorm._BatchNorm]:
    """BatchNorm layers of ``model`` that keep running statistics."""
    return [m for m in model.modules() if isinstance(m, _BN) and m.track_running_stats]


@torch.no_grad()
def recompute_bn_stats(model: nn.Module, inputs: Iterable[torch.Tensor],
                       forward: Optional[Callable[[nn.Module, torch.Tensor], object]] = None
                       ) -> int:
    """Set every BatchNorm's running mean/var to the average over ``inputs`` batches.

    Each layer's statistics are the equal-weight average of the per-batch statistics (PyTorch's
    cumulative mode, ``momentum=None``), i.e. what the layer saw in training mode on those
    batches. Weights are not changed; the model's train/eval mode is restored.

    Args:
        model: network with BatchNorm layers.
        inputs: batches, e.g. ``[N, 3, H, W]`` images in [0, 1] for DepthNet.
        forward: how to run the model on one batch (default ``model(x)``).
    Returns:
        The number of batches used (0 leaves the statistics untouched).
    """
    layers = bn_layers(model)
    if not layers:
        return 0
    was_training = model.training
    saved = [(m.momentum, m.running_mean.clone(), m.running_var.clone(),
              m.num_batches_tracked.clone()) for m in layers]
    for m in layers:
        m.reset_running_stats()
        m.momentum = None  # cumulative average over the batches below
    model.train()
    n = 0
    try:
        for x in inputs:
            (forward or (lambda net, b: net(b)))(model, x)
            n += 1
    finally:
        for m, (mom, mean, var, count) in zip(layers, saved):
            m.momentum = mom
            if n == 0:  # nothing seen: keep what was there
                m.running_mean.copy_(mean)
                m.running_var.copy_(var)
                m.num_batches_tracked.copy_(count)
        model.train(was_training)
    return n


@torch.no_grad()
def train_eval_gap(model: nn.Module, x: torch.Tensor,
                   to_depth: Callable[[torch.Tensor], torch.Tensor]) -> float:
    """Mean absolute difference of log-depth between train-mode and eval-mode outputs.

    Train mode normalises with the statistics of ``x`` itself; running statistics are saved
    and restored, so the call has no side effect.

    Args:
        model: DepthNet; ``model(x)[0]`` is the full-resolution disparity ``[N, 1, H, W]``.
        x: ``[N, 3, H, W]`` images in [0, 1].
        to_depth: disparity → depth in metres.
    Returns:
        ``mean |log d_train − log d_eval|`` (0 when the two agree).
    """
    was_training = model.training
    layers = bn_layers(model)
    saved = [(m.running_mean.clone(), m.running_var.clone(), m.num_batches_tracked.clone())
             for m in layers]
    try:
        model.eval()
        d_eval = to_depth(model(x)[0].float())
        model.train()
        d_train = to_depth(model(x)[0].float())
    finally:
        for m, (mean, var, count) in zip(layers, saved):
            m.running_mean.copy_(mean)
            m.running_var.copy_(var)
            m.num_batches_tracked.copy_(count)
        model.train(was_training)
    return float((d_train.clamp_min(1e-6).log() - d_eval.clamp_min(1e-6).log()).abs().mean())

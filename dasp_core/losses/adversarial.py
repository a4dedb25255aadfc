"""GAN losses for the adversarial spatiotemporal-prior branch, and a pool of past fakes.

The DASP paper trains a discriminator against the night depth network; its GAN objective is
not published. Least-squares GAN (Mao et al., 2017) is the default because RNW, the protocol
DASP inherits, uses it (ours); the vanilla (non-saturating BCE) objective is offered for
ablations. The image pool of past fakes follows Shrivastava et al. (2017) / CycleGAN as
used by RNW with 50 entries (ours).

Logits are raw discriminator outputs of any shape (patch maps ``[B, 1, h, w]``); no sigmoid.
"""

from __future__ import annotations

import random
from typing import Any, Dict, List, Optional

import torch
import torch.nn.functional as F

from dasp_core.errors import check_choice, check_range

__all__ = ["GAN_KINDS", "generator_loss", "discriminator_loss", "ImagePool"]

GAN_KINDS = ("lsgan", "vanilla")


def _target_loss(logits: torch.Tensor, target: float, kind: str) -> torch.Tensor:
    if kind == "lsgan":
        return ((logits - target) ** 2).mean()
    return F.binary_cross_entropy_with_logits(logits, torch.full_like(logits, target))


def generator_loss(fake_logits: torch.Tensor, kind: str = "lsgan") -> torch.Tensor:
    """Generator (night depth network) loss: make the discriminator call fakes real.

    * ``lsgan``: ``mean((D(fake) − 1)^2)`` (RNW; ours).
    * ``vanilla``: non-saturating ``BCEWithLogits(D(fake), 1)`` = ``mean(−log σ(D(fake)))``.

    Args:
        fake_logits: discriminator outputs on generated samples, any shape (e.g.
            ``[B, 1, h, w]``), with gradients to the generator.
        kind: ``"lsgan"`` or ``"vanilla"``.
    Returns:
        Scalar loss; 0 (lsgan) when all logits are 1.
    """
    check_choice("adversarial.kind", kind, GAN_KINDS)
    return _target_loss(fake_logits, 1.0, kind)


def discriminator_loss(real_logits: torch.Tensor, fake_logits: torch.Tensor,
                       kind: str = "lsgan") -> torch.Tensor:
    """Discriminator loss: real → 1, fake → 0, the two halves averaged (CycleGAN/RNW; ours).

    * ``lsgan``: ``0.5 (mean((D(real) − 1)^2) + mean(D(fake)^2))``.
    * ``vanilla``: ``0.5 (BCE(D(real), 1) + BCE(D(fake), 0))`` on logits.

    Args:
        real_logits: discriminator outputs on real samples (day teacher's depth stacks).
        fake_logits: outputs on generated samples (detach them from the generator).
        kind: ``"lsgan"`` or ``"vanilla"``.
    Returns:
        Scalar loss; 0 (lsgan) for real logits 1 and fake logits 0.
    """
    check_choice("adversarial.kind", kind, GAN_KINDS)
    return 0.5 * (_target_loss(real_logits, 1.0, kind) + _target_loss(fake_logits, 0.0, kind))


class ImagePool:
    """Buffer of past generated samples shown to the discriminator (ours: RNW uses 50).

    Feeding the discriminator a mix of current and older fakes damps oscillation between
    generator and discriminator. Until the pool holds ``size`` samples every new sample is
    stored and returned; afterwards each new sample is, with probability 0.5, swapped with a
    random stored one (the stored one is returned), else returned as is.

    All returned and stored tensors are detached: the pool feeds the discriminator step only.
    Samples are stored on the device they arrive on.

    Args:
        size: capacity (>= 0); 0 disables the pool (``query`` returns the batch detached).
        seed: optional seed of the pool's own random generator (reproducible mixing).
    """

    def __init__(self, size: int = 50, seed: Optional[int] = None):
        check_range("adversarial.pool_size", size, 0, None)
        if int(size) != size:
            raise ValueError(f"adversarial.pool_size = {size!r} is not allowed; "
                             "allowed: an integer >= 0")
        self.size = int(size)
        self._rng = random.Random(seed)
        self._items: List[torch.Tensor] = []

    def __len__(self) -> int:
        return len(self._items)

    def reset(self) -> None:
        """Forget all stored samples."""
        self._items.clear()

    def state_dict(self) -> Dict[str, Any]:
        """Snapshot for checkpoints: ``{"size", "items", "rng"}``.

        ``items`` are copies on the CPU (stored samples, e.g. ``[T, 1, H, W]`` each), ``rng`` the
        state of the pool's generator, so a restored pool returns exactly what this one would.
        """
        return {"size": self.size,
                "items": [t.detach().to("cpu", copy=True) for t in self._items],
                "rng": self._rng.getstate()}

    def load_state_dict(self, state: Dict[str, Any],
                        device: Optional[torch.device | str] = None) -> None:
        """Restore a :meth:`state_dict` (also the ``{"items", "rng"}`` of older checkpoints).

        Args:
            state: the snapshot.
            device: where the samples go (the training device); None keeps them on the CPU.
        Raises:
            ValueError: ``items`` is not a list of tensors of one shape.
        """
        items = list(state.get("items") or [])
        if not all(isinstance(t, torch.Tensor) for t in items) or \
                len({tuple(t.shape) for t in items}) > 1:
            raise ValueError("ImagePool.load_state_dict: 'items' must be a list of tensors of "
                             f"one shape, got {[getattr(t, 'shape', type(t)) for t in items]}")
        # a smaller pool never returns the samples beyond its size: dropping them changes nothing
        self._items = [t.detach().to(device) if device is not None else t.detach()
                       for t in items[:self.size]]
        if state.get("rng") is not None:
            self._rng.setstate(state["rng"])

    def query(self, batch: torch.Tensor) -> torch.Tensor:
        """Return a batch of the same shape mixing ``batch`` with stored past samples.

        Args:
            batch: ``[B, ...]`` generated samples (e.g. ``[B, T, 1, H, W]`` depth stacks).
        Returns:
            ``[B, ...]`` detached tensor on ``batch``'s device.
        """
        batch = batch.detach()
        if self.size == 0:
            return batch
        if self._items and self._items[0].shape != batch.shape[1:]:
            raise ValueError(f"ImagePool.query: sample shape {tuple(batch.shape[1:])} differs "
                             f"from the stored {tuple(self._items[0].shape)}; call reset() "
                             "when the sample size changes")
        out = []
        for sample in batch:
            if len(self._items) < self.size:
                self._items.append(sample.clone())
                out.append(sample)
            elif self._rng.random() < 0.5:
                idx = self._rng.randrange(self.size)
                old = self._items[idx]
                self._items[idx] = sample.clone()
                out.append(old.to(batch.device))
            else:
                out.append(sample)
        return torch.stack(out, dim=0)

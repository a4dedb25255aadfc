"""What a training run writes for people: ``train.log`` (plain text), TensorBoard scalars and
images, and the one-line step summary; log lines routed through tqdm while a bar is shown.

Only the main process writes (``enabled=False`` elsewhere makes every call a no-op).
"""

from __future__ import annotations

import contextlib
import logging
import math
from pathlib import Path
from typing import Any, Dict, Iterator, Optional

import torch

__all__ = ["RunLog", "tqdm_logging"]

log = logging.getLogger("dasp_core.train.trainer")


class RunLog:
    """``train.log`` and TensorBoard of one run folder.

    Args:
        out_dir: the run folder (``train.log`` and ``tb/`` go there).
        enabled: whether this process writes (rank 0).
        tensorboard: also write TensorBoard events (an optional extra; a warning if missing).
    """

    def __init__(self, out_dir: Path, enabled: bool = True, tensorboard: bool = True) -> None:
        self.out_dir = Path(out_dir)
        self.enabled = enabled
        self.tensorboard = tensorboard
        self._handler: Optional[logging.Handler] = None
        self._old_level = logging.NOTSET
        self._writer: Any = None

    def open(self) -> None:
        """Start appending to ``train.log`` (INFO and above of ``dasp_core``) and TensorBoard."""
        if not self.enabled:
            return
        self.out_dir.mkdir(parents=True, exist_ok=True)
        pkg = logging.getLogger("dasp_core")
        self._old_level = pkg.level
        if pkg.getEffectiveLevel() > logging.INFO:
            pkg.setLevel(logging.INFO)
        h = logging.FileHandler(self.out_dir / "train.log")
        h.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
        h.setLevel(logging.INFO)
        pkg.addHandler(h)
        self._handler = h
        if self.tensorboard:
            try:
                from torch.utils.tensorboard import SummaryWriter
                self._writer = SummaryWriter(str(self.out_dir / "tb"))
            except ImportError as e:  # tensorboard is an optional extra
                log.warning("TensorBoard disabled: %s", e)

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
            self._writer = None
        if self._handler is not None:
            pkg = logging.getLogger("dasp_core")
            pkg.removeHandler(self._handler)
            pkg.setLevel(self._old_level)
            self._handler.close()
            self._handler = None

    def scalar(self, tag: str, value: float, step: int) -> None:
        """One TensorBoard scalar (non-finite values are skipped, not plotted as gaps)."""
        if self._writer is not None and math.isfinite(value):
            self._writer.add_scalar(tag, value, step)

    def images(self, visuals: Dict[str, torch.Tensor], teacher_disp: Optional[torch.Tensor],
               step: int) -> None:
        """Target image ``visuals["image"] [B, 3, H, W]`` and its disparity
        ``visuals["disparity"] [B, 1, H, W]`` (first clip), and the day teacher's disparity
        ``[H, W]`` the discriminator saw as real, as colour maps."""
        if self._writer is None or not visuals:
            return
        from dasp_core.viz import colorize_disparity

        img = visuals["image"][0].clamp(0, 1).cpu().numpy()
        self._writer.add_image("images/target", img, step)
        disp = visuals["disparity"][0, 0].cpu().numpy()
        self._writer.add_image("images/disparity", colorize_disparity(disp), step,
                               dataformats="HWC")
        if teacher_disp is not None:
            self._writer.add_image("images/teacher_real",
                                   colorize_disparity(teacher_disp.cpu().numpy()), step,
                                   dataformats="HWC")

    def step_summary(self, means: Dict[str, float], step: int, total: int, epoch: int,
                     steps_per_s: float) -> None:
        """Scalars to TensorBoard and one ``train.log`` line: losses, discriminator
        statistics, generator learning rate, speed."""
        if not self.enabled:
            return
        for k, val in means.items():
            self.scalar(k, val, step)
        self.scalar("speed/steps_per_s", steps_per_s, step)
        losses = " ".join(f"{k.split('/', 1)[1]} {val:.4g}" for k, val in means.items()
                          if k.startswith("loss/"))
        extra = " ".join(f"{k} {val:.3g}" for k, val in means.items() if k.startswith("D/"))
        log.info("step %d/%d epoch %d | %s%s | lr %.2e | %.2f steps/s", step, total, epoch,
                 losses, (" | " + extra) if extra else "",
                 means.get("lr/generator", float("nan")), steps_per_s)


@contextlib.contextmanager
def tqdm_logging(bar: Any) -> Iterator[None]:
    """Route log lines through tqdm while a bar is shown, so they do not break it."""
    if getattr(bar, "disable", True):
        yield
        return
    try:
        from tqdm.contrib.logging import logging_redirect_tqdm
    except ImportError:  # pragma: no cover
        yield
        return
    with logging_redirect_tqdm(loggers=[logging.getLogger("dasp_core"), logging.getLogger()]):
        yield

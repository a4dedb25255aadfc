"""Model export: checkpoint → ONNX (``export.onnx``) → TensorRT engine (``export.tensorrt``).

Kept import-light (no torch, no onnx, no tensorrt here): the deployment runtime imports
:func:`cache_dir` from this package.

Cache layout (ours)::

    $DASP_CACHE_DIR  (default: $XDG_CACHE_HOME/dasp, else ~/.cache/dasp)
      onnx/      ONNX graphs exported on the fly from .pt checkpoints by ``create_estimator``
      engines/   TensorRT engines, one per (ONNX sha256, TensorRT version, GPU, compute
                 capability, input shape, precision[, calibration]) — see ``export.tensorrt``
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Optional

CACHE_ENV = "DASP_CACHE_DIR"


def cache_dir(kind: str, root: Optional[str | os.PathLike] = None) -> Path:
    """Directory ``<root>/<kind>`` (created), root from the argument, ``$DASP_CACHE_DIR``,
    ``$XDG_CACHE_HOME/dasp`` or ``~/.cache/dasp`` in that order."""
    if root is None:
        root = os.environ.get(CACHE_ENV)
    if not root:
        xdg = os.environ.get("XDG_CACHE_HOME")
        root = Path(xdg) / "dasp" if xdg else Path.home() / ".cache" / "dasp"
    path = Path(root).expanduser() / kind
    path.mkdir(parents=True, exist_ok=True)
    return path


__all__ = ["cache_dir", "CACHE_ENV"]

"""Files shipped inside the package: the default (demo) depth model.

The shipped model is produced by ``make demo-model`` (see docs/demo_model.md): a small
MobileNetV3 DepthNet trained with the DASP pipeline on the synthetic day/night world, exported
to ONNX so the node runs it without torch.
"""

from __future__ import annotations

from pathlib import Path

ASSET_DIR = Path(__file__).resolve().parent
DEFAULT_ONNX = "dasp_demo.onnx"
DEFAULT_CHECKPOINT = "dasp_demo.pt"


def default_model_path(kind: str = "onnx") -> str:
    """Path of the shipped model: ``kind="onnx"`` (deployment) or ``"checkpoint"`` (torch).

    Raises FileNotFoundError with what to do when the file is absent (e.g. a source checkout
    where the model has not been built).
    """
    name = DEFAULT_ONNX if kind == "onnx" else DEFAULT_CHECKPOINT
    path = ASSET_DIR / name
    if not path.is_file():
        raise FileNotFoundError(
            f"the shipped model {path} is missing; build it with `make demo-model` or pass a "
            f"model explicitly (node parameter `model`, or `dasp ... MODEL`)")
    return str(path)

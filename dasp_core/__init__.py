"""dasp_core — DASP nighttime self-supervised monocular depth: the ROS-free library.

Nothing in this package imports ROS. The deployment path (``dasp_core.runtime`` with the
onnxruntime or TensorRT backend) imports neither torch nor ROS.
"""

__version__ = "0.1.0"

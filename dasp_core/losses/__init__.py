"""Training losses of DASP: photometric reprojection, smoothness, 3D consistency, GAN.

``photometric`` — SSIM, SSIM+L1 error, per-pixel minimum reprojection with auto-masking;
``smoothness`` — edge-aware smoothness of mean-normalised disparity;
``consistency3d`` — the bidirectional 3D consistency projection loss;
``adversarial`` — least-squares / vanilla GAN losses and the pool of past fakes.
"""

from dasp_core.losses.adversarial import ImagePool, discriminator_loss, generator_loss
from dasp_core.losses.consistency3d import consistency_3d_error, consistency_3d_loss
from dasp_core.losses.photometric import min_reprojection_loss, photometric_error, ssim
from dasp_core.losses.smoothness import edge_aware_smoothness

__all__ = [
    "ssim", "photometric_error", "min_reprojection_loss", "edge_aware_smoothness",
    "consistency_3d_error", "consistency_3d_loss", "generator_loss", "discriminator_loss",
    "ImagePool",
]

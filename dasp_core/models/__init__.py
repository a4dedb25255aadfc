"""Networks of DASP: depth, pose and the adversarial branch's discriminators.

* :class:`DepthNet` / :class:`DepthNetConfig` — image → multi-scale sigmoid disparity;
  :class:`DisparityHead` — export wrapper (full-resolution disparity only).
* :class:`PoseNet` / :class:`PoseNetConfig` — frame pair → axis-angle + translation of T_s_t.
* :class:`Discriminator` / :class:`DiscriminatorConfig` — DASP's four-SPLB discriminator on
  temporal disparity stacks; :class:`PatchDiscriminator` — RNW's single-map PatchGAN baseline.
"""

from dasp_core.models.depth_net import DepthNet, DepthNetConfig, DisparityHead
from dasp_core.models.discriminator import (Discriminator, DiscriminatorConfig,
                                            PatchDiscriminator, mean_normalise_stack)
from dasp_core.models.pose_net import PoseNet, PoseNetConfig

__all__ = ["DepthNet", "DepthNetConfig", "DisparityHead", "PoseNet", "PoseNetConfig",
           "Discriminator", "DiscriminatorConfig", "PatchDiscriminator", "mean_normalise_stack"]

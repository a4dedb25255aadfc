"""Where the reprojection loss gets its camera motion: the recording's odometry or PoseNet.

``pose.source`` (ours):

* ``odometry`` — the clip's own camera poses (``Clip.poses``: camera→world ``[T, 4, 4]`` in the
  REP 103 optical frame). Robots know how they moved (wheels, IMU, VO, GNSS/INS); using that
  motion removes the hardest part of self-supervision from scratch (a pose network learned from
  images) and makes depth metric by construction, because the translation is in metres. What
  each reader provides is listed in ``docs/datasets.md`` (synthetic: exact poses; RobotCar: VO;
  nuScenes: ego_pose; image folders: ``poses.csv``; rosbag2: ``nav_msgs/Odometry`` poses).
* ``posenet`` — monodepth2's pose network on frame pairs **in temporal order**: for a later
  source ``(I_t, I_s)`` gives ``T_s_t`` directly, for an earlier source ``(I_s, I_t)`` gives
  ``T_t_s``, which is inverted. A network fed ``(I_t, I_s)`` for both sources sees two pairs
  that look alike (the same forward motion) and must output opposite motions for them; from
  scratch it does not, and min-reprojection hides the wrong one (measured: forward sign right
  for source −1 in 100 % of clips and for +1 in 0 %). Same rule as monodepth2's trainer.

Convention block (all functions): ``T_s_t`` maps points from the target camera frame to the
source camera frame (``X_s = T_s_t @ X_t``); translations in metres (odometry) or in the depth
network's unknown scale (PoseNet); frames are ``[B, T, 3, H, W]`` in clip order.
"""

from __future__ import annotations

from typing import Callable, ContextManager, List, Tuple

import torch
import torch.nn as nn

from dasp_core.errors import DatasetError
from dasp_core.geometry import invert_pose, pose_vec_to_matrix

__all__ = ["POSE_SOURCES", "odometry_poses", "posenet_poses"]

POSE_SOURCES = ("posenet", "odometry")


def odometry_poses(poses: torch.Tensor, has_poses: torch.Tensor, target: int,
                   sources: Tuple[int, ...]) -> Tuple[List[torch.Tensor], List[torch.Tensor]]:
    """Target→source transforms from the clips' camera→world poses.

    ``T_s_t = inv(T_w_s) @ T_w_t``.

    Args:
        poses: ``[B, T, 4, 4]`` camera→world poses (metres), clip order.
        has_poses: ``[B]`` bool, whether the clip carried poses (identity otherwise).
        target: index of the target frame in the clip.
        sources: indices of the source frames.
    Returns:
        ``(T_s_t, translations)``: per source, ``[B, 4, 4]`` and ``[B, 3]`` (metres), float32.
    Raises:
        DatasetError: a clip of the batch has no poses (the reader provides none): use
            ``pose.source: posenet`` for such recordings.
    """
    if not bool(has_poses.all()):
        n = int((~has_poses.bool()).sum())
        raise DatasetError(f"pose.source=odometry but {n} of {has_poses.numel()} clips in this "
                           f"batch carry no camera poses; give the reader its odometry "
                           f"(docs/datasets.md lists what each reader provides) or set "
                           f"pose.source=posenet")
    p = poses.float()
    T_w_t = p[:, target]
    out = [invert_pose(p[:, i]) @ T_w_t for i in sources]
    return out, [T[:, :3, 3] for T in out]


def posenet_poses(pose_net: nn.Module, frames: torch.Tensor, target: int,
                  sources: Tuple[int, ...], source_offsets: Tuple[int, ...],
                  amp: Callable[[], ContextManager]
                  ) -> Tuple[List[torch.Tensor], List[torch.Tensor]]:
    """PoseNet on every (earlier, later) pair of target and source, in one batched call.

    ``pose_net(a, b)`` predicts the motion from frame ``a`` to frame ``b`` (``T_b_a``); pairs
    are ordered by time, and the result is inverted for sources before the target.

    Args:
        pose_net: :class:`~dasp_core.models.PoseNet` (or a DDP wrapper).
        frames: ``[B, T, 3, H, W]`` network input frames in [0, 1].
        target, sources: clip indices of the target and of each source.
        source_offsets: frame offset of each source (its sign orders the pair).
        amp: autocast context factory.
    Returns:
        ``(T_s_t, translations)``: per source, ``[B, 4, 4]`` target→source transforms and the
        ``[B, 3]`` translation of ``T_s_t`` (network scale), float32.
    """
    B = frames.shape[0]
    tgt = frames[:, target]
    first, second = [], []
    for i, off in zip(sources, source_offsets):
        src = frames[:, i]
        first.append(tgt if off > 0 else src)
        second.append(src if off > 0 else tgt)
    with amp():
        aa, t = pose_net(torch.cat(first, 0), torch.cat(second, 0))
    aa, t = aa.float(), t.float()
    out: List[torch.Tensor] = []
    for k, off in enumerate(source_offsets):
        sl = slice(k * B, (k + 1) * B)
        out.append(pose_vec_to_matrix(aa[sl], t[sl], invert=off < 0))
    return out, [T[:, :3, 3] for T in out]

"""Data: the :class:`~dasp_core.data.sample.Clip` every reader yields, and the readers."""

from dasp_core.data.sample import Clip, clip_to_tensors, collate_clips

__all__ = ["Clip", "clip_to_tensors", "collate_clips"]

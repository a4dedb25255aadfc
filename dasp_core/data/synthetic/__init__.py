"""Procedural synthetic driving world, rendered by day and by night, with exact ground truth.

RobotCar and nuScenes cannot be downloaded everywhere (CI, this project's machines), so the
accuracy claims of dasp are measured on this world. It is a Manhattan city of streets,
pavements, facades with windows, parked and moving cars, lamps, trees and props; a camera car
drives through it at 5–15 m/s with turns and stops. Every frame comes with exact z-depth
(metres, 0 = sky), the camera pose (camera→world, REP 103 optical frame), the speed, and masks
of moving cars and of dark / lit regions.

Night is made hard the ways real night is: very low ambient light and large dark textureless
areas, real point/spot light sources (lamps, headlights) with inverse-square fall-off, lit
windows, glare around lights, signal-dependent sensor noise at high gain, wet roads with
reflections, and motion blur of moving cars. See ``docs/synthetic.md``.

Main entry points::

    from dasp_core.data.synthetic import SyntheticConfig, render_sequence, SyntheticClipDataset
    seq = render_sequence(seed=0, domain="night", n_frames=100, cfg=SyntheticConfig())
    ds = SyntheticClipDataset("day", seeds=range(10), frames_per_sequence=200)
    clip = ds[0]                        # dasp_core.data.sample.Clip with depth, poses, speed
    write_folder(seq, "out/night_0")    # PNG/NPY/CSV/JSON
    write_synthetic_bag([seq], "out/bag", storage="mcap")

The package imports numpy, OpenCV and tqdm only (no torch, no ROS).
"""

from dasp_core.data.synthetic.config import DOMAINS, SyntheticConfig
from dasp_core.data.synthetic.dataset import SyntheticClipDataset
from dasp_core.data.synthetic.io import (read_folder, read_synthetic_bag, write_folder,
                                         write_synthetic_bag)
from dasp_core.data.synthetic.render import Frame, SequenceRenderer
from dasp_core.data.synthetic.sequence import MASK_NAMES, SyntheticSequence, render_sequence

__all__ = ["DOMAINS", "SyntheticConfig", "SyntheticClipDataset", "SyntheticSequence",
           "SequenceRenderer", "Frame", "MASK_NAMES", "render_sequence", "write_folder",
           "read_folder", "write_synthetic_bag", "read_synthetic_bag"]

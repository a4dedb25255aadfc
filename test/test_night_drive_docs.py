"""The main job's docs copy: a drive GIF too large for the repository is thinned, never left
stale from an earlier model."""

from __future__ import annotations

import numpy as np
from PIL import Image, ImageSequence

from dasp_core.viz import write_gif
from dasp_ros.night_drive import thin_gif


def _noise_gif(path, n=8, fps=10.0):
    rng = np.random.default_rng(0)
    # noise does not compress: the size is about proportional to the frame count
    return write_gif([rng.integers(0, 256, (64, 96, 3), dtype=np.uint8) for _ in range(n)],
                     path, fps=fps)


def _frames_and_duration(path):
    with Image.open(path) as g:
        return sum(1 for _ in ImageSequence.Iterator(g)), g.info["duration"]


def test_a_gif_that_fits_is_copied_whole(tmp_path):
    src = _noise_gif(tmp_path / "drive.gif")
    assert thin_gif(src, tmp_path / "docs.gif", src.stat().st_size + 10_000) == 1
    assert _frames_and_duration(tmp_path / "docs.gif") == (8, 100)


def test_a_large_gif_keeps_every_kth_frame_at_real_time_speed(tmp_path):
    src = _noise_gif(tmp_path / "drive.gif")
    k = thin_gif(src, tmp_path / "docs.gif", int(src.stat().st_size * 0.6))
    assert k == 2
    assert _frames_and_duration(tmp_path / "docs.gif") == (4, 200)
    assert not (tmp_path / "docs.gif.tmp").exists()


def test_no_stride_fits_removes_the_stale_copy(tmp_path):
    src = _noise_gif(tmp_path / "drive.gif")
    stale = tmp_path / "docs.gif"
    stale.write_bytes(b"GIF89a an earlier model's drive")
    assert thin_gif(src, stale, 1_000) is None
    assert not stale.exists() and not (tmp_path / "docs.gif.tmp").exists()

"""scripts/stack_samples.py: eval sample strips stacked run by run, in order, at scale."""

from __future__ import annotations

from pathlib import Path

import pytest
from script_loader import load_script

Image = pytest.importorskip("PIL.Image")


@pytest.fixture(scope="module")
def script():
    return load_script("stack_samples")


def _run(tmp_path: Path, name: str, colours, width: int = 40, height: int = 10) -> Path:
    d = tmp_path / name
    (d / "samples").mkdir(parents=True)
    for k, c in enumerate(colours):
        Image.new("RGB", (width, height), c).save(d / "samples" / f"sample_{k:06d}.png")
    return d


def test_runs_stack_in_order_with_their_samples_together(script, tmp_path):
    a = _run(tmp_path, "a", [(255, 0, 0), (0, 255, 0), (9, 9, 9)])
    b = _run(tmp_path, "b", [(0, 0, 255), (255, 255, 0)])
    out = tmp_path / "strip.png"
    assert script.main([str(a), str(b), "--samples", "1", "0", "--scale", "0.5",
                        "--labels", "", "", "--out", str(out)]) == 0
    im = Image.open(out).convert("RGB")
    assert im.size == (20, 4 * 5)
    rows = [im.getpixel((10, 5 * i + 2)) for i in range(4)]
    assert rows == [(0, 255, 0), (255, 0, 0), (255, 255, 0), (0, 0, 255)]


def test_missing_samples_and_mixed_widths_are_refused(script, tmp_path, capsys):
    a = _run(tmp_path, "a", [(1, 1, 1)])
    assert script.main([str(a), "--samples", "0", "1", "--out", str(tmp_path / "x.png")]) == 2
    assert "sample_000001.png" in capsys.readouterr().err
    b = _run(tmp_path, "b", [(1, 1, 1)], width=30)
    assert script.main([str(a), str(b), "--samples", "0", "--out", str(tmp_path / "y.png")]) == 2
    assert "differ in width [30, 40]" in capsys.readouterr().err
    assert not (tmp_path / "x.png").exists() and not (tmp_path / "y.png").exists()


def test_rows_are_labelled_with_their_run_unless_told_otherwise(script, tmp_path):
    run = tmp_path / "seed1" / "dasp_ref"
    ev = _run(run, "eval_night", [(200, 200, 200)], width=200, height=60)
    assert script.run_label(ev) == "dasp_ref, seed1"
    assert script.run_label(run) == "dasp_ref, seed1"   # a run folder named directly

    def corner_changed(args) -> tuple:
        out = tmp_path / "s.png"
        assert script.main([str(ev), "--samples", "0", "--out", str(out), *args]) == 0
        im = Image.open(out).convert("RGB")
        # the label's darkened box sits bottom-left; the top-left stays as evaluated
        return im.getpixel((1, 58)) != (200, 200, 200), im.getpixel((1, 1)) != (200, 200, 200)

    assert corner_changed([]) == (True, False)
    assert corner_changed(["--labels", "full DASP"]) == (True, False)
    assert corner_changed(["--labels", ""]) == (False, False)


def test_labels_must_match_the_eval_folders(script, tmp_path):
    a = _run(tmp_path, "a", [(1, 1, 1)])
    with pytest.raises(SystemExit):
        script.main([str(a), "--samples", "0", "--labels", "x", "y",
                     "--out", str(tmp_path / "x.png")])
    assert not (tmp_path / "x.png").exists()

"""`scorepolicy data plot DATASET --frames N`: a strip of camera frames over one episode, one row per camera."""

from __future__ import annotations

import struct
from pathlib import Path

import numpy as np
import pytest
from tests.data.makers import small_episodes, write_v3, write_v3_with_video

from scorepolicy.cli import main
from scorepolicy.core.episodes import Episodes
from scorepolicy.data.frames import episode_frames, spread, strip_pixels
from scorepolicy.data.zarr_replay import write_replay_zarr
from scorepolicy.errors import ScorePolicyError


def png_size(path: Path) -> tuple[int, int]:
    """(width, height) from a PNG's IHDR chunk."""
    header = path.read_bytes()[:24]
    assert header[:8] == b"\x89PNG\r\n\x1a\n"
    width, height = struct.unpack(">II", header[16:24])
    return width, height


def image_zarr(path: Path) -> Path:
    """Two episodes (6 and 10 steps) whose frame at global row r has the value 10 r (float32, as DP stores)."""
    n = 16
    frames = np.stack([np.full((12, 12, 3), 10.0 * r, np.float32) for r in range(n)])
    episodes = Episodes(
        data={"state": np.zeros((n, 5), np.float32), "action": np.zeros((n, 2), np.float32), "img": frames},
        episode_ends=np.array([6, n]),
    )
    return write_replay_zarr(episodes, path)


def test_spread_includes_first_and_last() -> None:
    assert spread(10, 4).tolist() == [0, 3, 6, 9]
    assert spread(3, 8).tolist() == [0, 1, 2]  # a short episode gives each of its frames once


def test_zarr_frames_of_one_episode(tmp_path: Path) -> None:
    frames, offsets = episode_frames(image_zarr(tmp_path / "img.zarr"), episode=1, n=4)
    assert offsets.tolist() == [0, 3, 6, 9]
    assert frames["img"].dtype == np.uint8 and frames["img"].shape == (4, 12, 12, 3)
    assert frames["img"][:, 0, 0, 0].tolist() == [60, 90, 120, 150]  # rows 6 + offsets


def test_plot_writes_a_strip_of_the_expected_size(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    png = tmp_path / "frames.png"
    assert (
        main(["data", "plot", str(image_zarr(tmp_path / "img.zarr")), "--frames", "5", "--out", str(png)])
        == 0
    )
    assert png_size(png) == strip_pixels(5, 1)
    assert "frames:" in capsys.readouterr().out


def test_plot_lerobot_cameras_one_row_each(tmp_path: Path) -> None:
    pytest.importorskip("av")
    lengths = (5, 7)
    video = np.zeros((sum(lengths), 16, 16, 3), np.uint8)
    root = write_v3_with_video(
        tmp_path / "cam",
        small_episodes(lengths),
        {"observation.images.a": video, "observation.images.b": video},
    )
    png = tmp_path / "cams.png"
    assert main(["data", "plot", str(root), "--frames", "3", "--episode", "1", "--out", str(png)]) == 0
    assert png_size(png) == strip_pixels(3, 2)
    frames, _ = episode_frames(root, episode=1, n=3)
    assert sorted(frames) == ["observation.images.a", "observation.images.b"]
    assert frames["observation.images.a"].shape == (3, 160, 160, 3)  # decoded at the strip's 160 px


def test_dataset_without_cameras_is_a_one_line_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    root = write_v3(tmp_path / "plain")
    with pytest.raises(ScorePolicyError, match="no camera frames to plot") as exc:
        episode_frames(root)
    assert "\n" not in str(exc.value)
    assert main(["data", "plot", str(root), "--frames", "8", "--out", str(tmp_path / "x.png")]) == 2
    assert not (tmp_path / "x.png").exists()
    with pytest.raises(ScorePolicyError, match="--episode 5 out of range"):
        episode_frames(image_zarr(tmp_path / "img.zarr"), episode=5)

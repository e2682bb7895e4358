"""LeRobot camera features: video decoded per row (v3.0 files holding many episodes), resized, budgeted,
and the dataset task with images; absent videos keep the state-only load and the clear message."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
from tests.data.makers import shared_so101, small_episodes, write_v3_with_video

from scorepolicy.data.dataset_task import load_dataset_task
from scorepolicy.data.formats import load_dataset
from scorepolicy.data.lerobot import read_lerobot
from scorepolicy.data.lerobot_video import FrameOptions, decode_image_column
from scorepolicy.errors import ScorePolicyError

pytest.importorskip("av")

CAM = "observation.images.front"
LENGTHS = (5, 4, 6)
CODEC_TOL = 6.0
"""mpeg4 at 4 Mbit/s: a uniform frame's decoded mean is within a few units of its value (step: 16)."""


def row_value(row: int) -> int:
    return 10 + 16 * row


def camera_frames(n: int, h: int = 32, w: int = 48) -> np.ndarray:
    """Uniform frames whose value encodes the row (10, 26, ..., 234), so alignment can be read back."""
    return np.stack([np.full((h, w, 3), row_value(r), np.uint8) for r in range(n)])


@pytest.fixture
def video_dataset(tmp_path: Path) -> Path:
    episodes = small_episodes(LENGTHS)
    return write_v3_with_video(tmp_path / "cam", episodes, {CAM: camera_frames(sum(LENGTHS))})


def test_video_frames_align_with_rows_and_are_resized(video_dataset: Path) -> None:
    episodes = load_dataset(video_dataset, images=True, frames=FrameOptions(height=16))
    frames = episodes.data[CAM]
    assert frames.dtype == np.uint8 and frames.shape == (sum(LENGTHS), 16, 24, 3)  # aspect 32:48 kept
    means = frames.reshape(len(frames), -1).mean(axis=1)
    expected = np.array([row_value(r) for r in range(len(frames))])
    assert np.all(np.abs(means - expected) < CODEC_TOL), means - expected
    assert len(episodes.data["observation.state"]) == len(frames)


def test_frame_size_options() -> None:
    assert FrameOptions().size_for((480, 640)) == (96, 128)
    assert FrameOptions(height=84, width=84).size_for((480, 640)) == (84, 84)
    with pytest.raises(ScorePolicyError, match="budget-mb"):
        FrameOptions(budget_mb=0)


def test_over_budget_is_refused_before_decoding(video_dataset: Path) -> None:
    with pytest.raises(ScorePolicyError, match=r"MB in memory .* over the 0\.001 MB budget") as exc:
        load_dataset(video_dataset, images=True, frames=FrameOptions(height=16, budget_mb=0.001))
    message = str(exc.value)
    assert "\n" not in message and str(video_dataset) in message and "--dataset.cameras.budget-mb" in message


def test_dataset_task_detects_cameras(video_dataset: Path) -> None:
    task, episodes, record = load_dataset_task(video_dataset, None, None, FrameOptions(height=16, width=16))
    assert task.image_shapes == {CAM: (16, 16, 3)} and record["camera_keys"] == [CAM]
    assert task.dataset_images is not None
    part = episodes.select([2, 0])
    images, obs = task.dataset_images(part)[CAM], task.dataset_obs(part)
    assert len(images) == len(obs) == LENGTHS[2] + LENGTHS[0]
    rows = list(range(9, 15)) + list(range(5))  # episode 2 then episode 0, in global row numbers
    means = images.reshape(len(images), -1).mean(axis=1)
    assert np.all(np.abs(means - np.array([row_value(r) for r in rows])) < CODEC_TOL)
    plain, _, plain_record = load_dataset_task(video_dataset, None, None)  # no options: state only, as before
    assert plain.image_shapes == {} and "camera_keys" not in plain_record
    off, _, _ = load_dataset_task(video_dataset, None, None, FrameOptions(enabled=False))
    assert off.image_shapes == {}


def test_absent_video_keeps_state_only_and_the_clear_message(video_dataset: Path) -> None:
    for mp4 in video_dataset.glob("videos/**/*.mp4"):
        mp4.unlink()
    task, episodes, record = load_dataset_task(video_dataset, None, None, FrameOptions())
    assert task.image_shapes == {} and CAM not in episodes.data
    assert record["absent_camera_keys"] == [CAM] and record["camera_keys"] == []
    with pytest.raises(ScorePolicyError, match=rf"video stream '{CAM}' .* absent") as exc:
        load_dataset(video_dataset, images=True)
    assert "\n" not in str(exc.value)


def test_so101_without_videos_loads_state_only() -> None:
    root = shared_so101()
    task, episodes, record = load_dataset_task(root, None, None, FrameOptions())
    assert task.image_shapes == {} and episodes.n_steps == 1492 and task.obs_dim == 6
    assert record["absent_camera_keys"] == ["observation.images.front", "observation.images.top"]
    with pytest.raises(ScorePolicyError, match=r"video stream 'observation\.images\.front' .* absent"):
        read_lerobot(root, images=True)


def test_image_feature_column_decodes_png_bytes() -> None:
    image_module = pytest.importorskip("PIL.Image")
    values = []
    for v in (30, 200):
        buffer = io.BytesIO()
        image_module.fromarray(np.full((8, 12, 3), v, np.uint8)).save(buffer, format="PNG")
        values.append({"bytes": buffer.getvalue(), "path": None})
    frames = decode_image_column(values, "test", (4, 6))
    assert frames.shape == (2, 4, 6, 3) and frames.dtype == np.uint8
    assert np.array_equal(frames[:, 0, 0, 0], [30, 200])  # PNG is lossless; a box filter keeps uniform values
    with pytest.raises(ScorePolicyError, match="row 0 holds no encoded image"):
        decode_image_column([{"bytes": None}], "test", None)

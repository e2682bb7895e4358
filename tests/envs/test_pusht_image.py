"""The `pusht-image` task: frames drawn like DP's recorded ones, dict observations, uint8 frames from the zarr."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("gym_pusht")

from scorepolicy.cli import parse_train
from scorepolicy.core.episodes import Episodes
from scorepolicy.data.formats import load_dataset
from scorepolicy.data.zarr_replay import read_replay_zarr, write_replay_zarr
from scorepolicy.envs.pusht_image import (
    IMAGE_KEY,
    IMAGE_SHAPE,
    PUSHT_IMAGE_TASK,
    PushTImageEnv,
    make_pusht_image_env,
)
from scorepolicy.envs.pusht_render import PushTRenderer, light_color
from scorepolicy.envs.registry import get_task
from scorepolicy.errors import ScorePolicyError

REPO_ROOT = Path(__file__).resolve().parents[2]
MEAN_ABS_TOL = 0.5
"""Per frame: mean |rendered − recorded| over all pixels and channels, in 0..255 units (measured ≤ 0.18)."""
BIG_DIFF = 32
FRACTION_BIG_TOL = 0.005
"""Per frame: fraction of pixels where some channel differs by more than BIG_DIFF (measured ≤ 0.0021)."""


def zarr_path() -> Path:
    """The shared Push-T replay zarr, or skip when absent."""
    default = REPO_ROOT.parent / "shared" / "data" / "pusht_cchi_v7_replay.zarr"
    path = Path(os.environ.get("SCOREPOLICY_PUSHT_ZARR", str(default)))
    if not path.exists():
        pytest.skip(f"Push-T replay zarr not found at {path} (set SCOREPOLICY_PUSHT_ZARR to its location)")
    return path


def reference_frame(env: PushTImageEnv) -> np.ndarray:
    """gym-pusht's own 96-px frame of the env's current state (its pymunk debug drawing + cv2 resize)."""
    base = env.unwrapped
    return np.asarray(base._get_img(base._draw(), 96, 96))  # type: ignore[attr-defined]


def test_rendered_frames_agree_with_recorded_frames() -> None:
    """Reset to recorded states (the zarr's data/state, angle quirk compensated) and compare with data/img."""
    zarr = pytest.importorskip("zarr")
    group = zarr.open_group(str(zarr_path()), mode="r")
    rows = [0, 51, 777, 3001, 8123, 12000, 16543, 20002, 25649]  # starts, pushes (contacts), episode ends
    states, recorded = group["data/state"], group["data/img"]
    env = make_pusht_image_env()
    for row in rows:
        obs, _ = env.reset(options={"reset_to_state": np.asarray(states[row])})
        frame = obs[IMAGE_KEY].astype(np.int16)
        diff = np.abs(frame - np.asarray(recorded[row]).astype(np.int16))
        assert diff.mean() <= MEAN_ABS_TOL, (row, diff.mean())
        assert (diff.max(axis=-1) > BIG_DIFF).mean() <= FRACTION_BIG_TOL, row
        np.testing.assert_allclose(obs["state"], states[row][:2], atol=1e-3)


def test_renderer_is_pixel_identical_to_gym_pusht() -> None:
    """The fast renderer draws exactly gym-pusht's frame, walls, agent on walls and contact points included."""
    env = make_pusht_image_env()
    rng = np.random.default_rng(0)
    contacts = 0
    for step in range(40):
        if step % 10 == 0:
            obs, _ = env.reset(seed=int(rng.integers(1 << 30)))
        else:  # push towards the block (contacts) or into the walls (agent over a wall)
            target = env.raw_state()[2:4] if step % 3 else rng.choice([0.0, 512.0], size=2)
            obs, _, _, _, info = env.step(np.asarray(target, dtype=np.float64))
            contacts += int(info["n_contacts"] > 0)
        np.testing.assert_array_equal(obs[IMAGE_KEY], reference_frame(env), err_msg=f"step {step}")
    assert contacts >= 5  # frames with red contact segments were compared too


def test_light_color_matches_recorded_block_interior() -> None:
    """LightSlateGray × 1.2, rounded: the colour of the block's interior in data/img."""
    assert light_color((119, 136, 153)) == (143, 163, 184)
    assert light_color((65, 105, 225)) == (78, 126, 255)  # RoyalBlue, capped at 255


def test_env_observation_contract() -> None:
    env = get_task("pusht-image").make_env(None)
    obs, _ = env.reset(seed=100000)
    assert set(obs) == {"state", IMAGE_KEY}
    assert obs["state"].dtype == np.float32 and obs["state"].shape == (PUSHT_IMAGE_TASK.obs_dim,)
    assert obs[IMAGE_KEY].dtype == np.uint8 and obs[IMAGE_KEY].shape == IMAGE_SHAPE
    assert env.observation_space.contains(obs)
    obs2, _, _, _, info = env.step(np.array([100.0, 100.0]))
    assert env.observation_space.contains(obs2) and "coverage" in info
    assert not np.array_equal(obs[IMAGE_KEY], obs2[IMAGE_KEY])  # the agent moved on the frame
    assert PUSHT_IMAGE_TASK.image_shapes == {IMAGE_KEY: IMAGE_SHAPE}


def test_video_render_mode_still_gives_the_large_view() -> None:
    env = make_pusht_image_env("rgb_array")
    env.reset(seed=1)
    assert env.render().shape == (680, 680, 3)  # type: ignore[union-attr]


def test_renderer_rejects_bad_size() -> None:
    env = make_pusht_image_env()
    with pytest.raises(ScorePolicyError, match="frame size"):
        PushTRenderer(env.unwrapped, 0)


def _image_episodes(frames: np.ndarray) -> Episodes:
    n = len(frames)
    rng = np.random.default_rng(1)
    return Episodes(
        data={
            "state": rng.uniform(0, 512, size=(n, 5)).astype(np.float32),
            "action": rng.uniform(0, 512, size=(n, 2)).astype(np.float32),
            "img": frames,
        },
        episode_ends=np.array([3, n]),
    )


def test_dataset_images_are_uint8_and_aligned(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    frames = rng.integers(0, 256, size=(7, 96, 96, 3)).astype(np.float32)  # DP stores float32 0..255
    store = write_replay_zarr(_image_episodes(frames), tmp_path / "img.zarr")
    episodes = load_dataset(store, images=True)
    assert episodes.data["img"].dtype == np.uint8
    images = PUSHT_IMAGE_TASK.dataset_images(episodes)  # type: ignore[misc]
    np.testing.assert_array_equal(images[IMAGE_KEY], frames.astype(np.uint8))
    obs = PUSHT_IMAGE_TASK.dataset_obs(episodes)
    assert obs.shape == (7, 2) and len(images[IMAGE_KEY]) == len(obs)
    part = episodes.select([1])  # rows stay aligned when episodes are selected
    np.testing.assert_array_equal(
        PUSHT_IMAGE_TASK.dataset_images(part)[IMAGE_KEY], frames[3:].astype(np.uint8)
    )  # type: ignore[misc]
    assert "img" not in load_dataset(store).data  # without images=True frames are still not read


def test_float_frames_outside_0_255_are_refused(tmp_path: Path) -> None:
    frames = np.full((7, 96, 96, 3), 0.5, dtype=np.float32)
    frames[4, 0, 0, 0] = 300.0
    store = write_replay_zarr(_image_episodes(frames), tmp_path / "bad.zarr")
    with pytest.raises(ScorePolicyError, match=r"0\.\.255") as exc:
        read_replay_zarr(store, images=True)
    assert "\n" not in str(exc.value)
    episodes = read_replay_zarr(store, keys=["state", "img"])  # as floats, on request
    with pytest.raises(ScorePolicyError, match=r"0\.\.255"):
        PUSHT_IMAGE_TASK.dataset_images(episodes)  # type: ignore[misc]


def test_dataset_images_need_the_frames() -> None:
    episodes = _image_episodes(np.zeros((7, 96, 96, 3), np.uint8))
    del episodes.data["img"]
    with pytest.raises(ScorePolicyError, match="images=True"):
        PUSHT_IMAGE_TASK.dataset_images(episodes)  # type: ignore[misc]


def test_recipe_is_the_benchmarked_unet_run() -> None:
    """`train --task pusht-image` trains what benchmarks/pusht_image.py measured: the U-Net with the CPU CNN,
    batch 64, 13.7 k steps, every quarter kept for `select`."""
    job = parse_train(["--task", "pusht-image"])
    assert job.policy.denoiser == "unet1d" and job.policy.vision.encoder == "cnn"
    t = job.train
    assert (t.steps, t.batch_size, t.checkpoint_every, t.keep_snapshots) == (13_700, 64, 3_425, 4)
    assert job.dataset.max_train_episodes == 90

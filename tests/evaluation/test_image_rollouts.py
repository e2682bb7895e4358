"""Rollouts of an image task: dict observations batched per key, the same records in env worker processes,
trajectories keep the state, videos are written."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from scorepolicy.envs.target_image import CAMERA, SIZE, TARGET_IMAGE_TASK, expert_action
from scorepolicy.evaluation.waves import run_rollouts


class FramePolicy:
    """Reads the target's place from the red channel of each frame (checks the frames reach the policy)."""

    def __init__(self) -> None:
        self.calls: list[tuple[tuple[int, ...], tuple[int, ...]]] = []

    def reset(self) -> None:
        pass

    def select_action(self, obs: dict[str, np.ndarray]) -> np.ndarray:
        state, frames = obs["state"], obs[CAMERA]
        self.calls.append((state.shape, frames.shape))
        assert state.dtype == np.float32 and frames.dtype == np.uint8
        actions = []
        for pos, frame in zip(state, frames):
            rows, cols = np.nonzero(frame[..., 0])
            target = np.array([cols.mean(), rows.mean()]) / (SIZE - 1) * 2 - 1
            actions.append(expert_action(pos, target))
        return np.stack(actions)


def test_image_task_rollouts_batch_frames_and_match_across_env_workers(tmp_path: Path) -> None:
    seeds = list(range(100000, 100006))
    policy = FramePolicy()
    common: dict[str, Any] = dict(n_envs=3, progress=False, keep_trajectories=True)
    local = run_rollouts(policy, TARGET_IMAGE_TASK, seeds, **common, n_videos=1, video_dir=tmp_path)
    assert policy.calls[0] == ((3, 2), (3, SIZE, SIZE, 3))
    assert all(r["success"] == 1.0 for r in local)  # the frames carried the target
    assert len(local[0]["observations"][0]) == 2  # trajectories keep the state vector
    assert (tmp_path / "episode_100000.mp4").is_file()
    workers = run_rollouts(FramePolicy(), TARGET_IMAGE_TASK, seeds, **common, env_workers=2)
    strip = [{k: v for k, v in r.items() if k != "video"} for r in local]
    assert workers == strip

"""A tiny train-then-evaluate run on the bundled obstacle task must clearly beat a random policy."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from scorepolicy import api
from scorepolicy.envs.obstacles import OBSTACLE_TASK
from scorepolicy.evaluation import EvalConfig, evaluate
from scorepolicy.models import MLPConfig


class RandomPolicy:
    """Uniform random actions in the task's action box."""

    def __init__(self, seed: int) -> None:
        self.rng = np.random.default_rng(seed)

    def reset(self) -> None:
        pass

    def select_action(self, obs: np.ndarray) -> np.ndarray:
        return self.rng.uniform(-1, 1, size=(obs.shape[0], 2)).astype(np.float32)


def test_tiny_run_beats_random_by_a_clear_margin(tmp_path: Path) -> None:
    job = api.TrainJob(
        task="obstacles", out=tmp_path / "run", dataset=api.DataConfig(n_demos=60, val_fraction=0)
    )
    job.policy.mlp = MLPConfig(width=128, n_blocks=3, cond_dim=64, sigma_dim=32)
    t = job.train
    t.steps, t.batch_size, t.lr, t.warmup_steps, t.checkpoint_every = 2000, 128, 1e-3, 100, 2000
    t.progress = t.tensorboard = False
    api.run_training(job)
    cfg = EvalConfig(episodes=40, progress=False)
    trained = api.evaluate_run(job.out, cfg)
    random = evaluate(RandomPolicy(0), OBSTACLE_TASK, cfg)
    # a clear margin: the trained policy's 95% interval lies wholly above the random policy's
    assert trained["success_ci"][0] > random["success_ci"][1], (trained["success_ci"], random["success_ci"])
    assert trained["n_routes"] >= 2  # more than one route: the policy is not a single deterministic path

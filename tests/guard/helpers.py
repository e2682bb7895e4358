"""A monitor for the untrained point-task policy, fitted on any of its episodes (tests need no success)."""

from __future__ import annotations

from scorepolicy.core.task import Task
from scorepolicy.evaluation.rollout import RolloutOptions
from scorepolicy.guard import GuardSettings, Monitor, RNDConfig
from scorepolicy.guard.calibrate import fit_monitor, record_rollouts
from scorepolicy.policies import ChunkPolicy
from tests.evaluation.conftest import stochastic_policy
from tests.evaluation.point_task import make_point_task

SETTINGS = GuardSettings(
    n_samples=4, window=2, cell_fraction=0.25, rnd=RNDConfig(width=32, out_dim=8, steps=100)
)


def point_setup(sampler: str = "euler_ancestral") -> tuple[ChunkPolicy, Task]:
    """The tiny score policy (2-D actions) and the point task whose env takes the first action entry."""
    policy = stochastic_policy(obs_dim=2, action_dim=1)
    policy.cfg.diffusion.sampler = sampler  # type: ignore[assignment]
    return policy, make_point_task(max_steps=12)


def point_monitor(policy: ChunkPolicy, task: Task, delta: float = 0.2) -> Monitor:
    """Fit on 10 episodes, thresholds from 10 others (successful or not: only the mechanics are tested)."""
    opts = RolloutOptions(n_envs=10, progress=False)
    _, traces = record_rollouts(policy, task, range(500, 520), SETTINGS, opts)
    seeds = sorted(traces)
    fit = [traces[s] for s in seeds[:10]]
    held = [traces[s] for s in seeds[10:]]
    return fit_monitor(policy, fit, held, delta, SETTINGS)

"""Seeded rollouts in waves: one record per episode, the same for any n_envs, env workers or Ray.

Episodes run in waves of up to `n_envs` environments that start together and step together, because a
batch policy keeps one observation history and action queue per batch row. Each env is built per wave
from `task.make_env`, reset with its own seed (episode i uses seeds[i]) and never auto-reset; an env whose
episode is over is no longer stepped, and the policy keeps seeing its last observation.

Sampling noise is per episode too. At the start of every wave the policy is reset with `seeds=` the
wave's env seeds (when its `reset` takes `seeds`, as `ChunkPolicy.reset` does), so batch row i draws its
noise from its own generator seeded with its episode's env seed (`diffusion/random.py`), whatever the
other rows are. An episode's record thus depends only on its seed and the policy: not on `n_envs`, on
which wave, process or Ray worker ran it, or on an interruption and resume. This needs the policy's
network to give a row the same bits at any batch size, which holds for the MLP, transformer and MoDE
denoisers on the CPU here (MKL, 1 or 2 threads; tested at batch sizes 1 to 64). A policy whose `reset`
takes only `seed` gets the wave's first seed for its one stream, and its records do depend on `n_envs`.

Envs are stepped in this process (`SerialStepper`) or, with `env_workers` > 1, in worker processes
(`env_workers.py`, where a hung env is stopped by `step_timeout`). Either way an exception raised by an
env (at creation, reset or step) is that episode's error: the episode is recorded with its seed, error
and a traceback summary, and the others are unaffected.
"""

from __future__ import annotations

import dataclasses
import inspect
import logging
import traceback
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import gymnasium as gym
import imageio.v2 as imageio
import numpy as np
from tqdm.auto import tqdm

from scorepolicy.core.task import Task
from scorepolicy.errors import ScorePolicyError
from scorepolicy.evaluation.observations import (
    Observation,
    as_observation,
    copy_observation,
    stack_observations,
    state_of,
    zero_observation,
)

log = logging.getLogger(__name__)

StepResult = tuple[Observation, float, bool, bool, dict[str, Any]]
"""(observation, reward, terminated, truncated, info) of one env step (image tasks: a dict observation)."""


class BatchPolicy(Protocol):
    """A policy acting on a batch of B environments that start (reset) and step together.

    If `reset` accepts a keyword `seeds`, each wave gives every batch row its own noise seed (the
    episode's env seed); if it accepts only `seed`, the wave's first env seed. A policy with a method
    `episode_extras(row) -> dict` adds its fields to each episode's record when the episode ends.
    """

    def reset(self) -> None:
        """Clear the observation history and action queue of every batch row."""
        ...

    def select_action(self, obs: Any) -> np.ndarray:
        """Map observations (B, obs_dim) float32 (image tasks: a dict {"state": (B, obs_dim), camera: uint8
        (B, H, W, 3)}) to actions (B, action_dim)."""
        ...


@dataclass
class RolloutOptions:
    """How the episodes of an evaluation are rolled out (the same options for every backend)."""

    n_envs: int = 50
    """Environments run together in one wave (the policy's batch size); records do not depend on it."""
    max_steps: int | None = None
    """Episode step limit; None uses the task's max_steps."""
    video_dir: Path | None = None
    """Directory for episode_<seed>.mp4 videos (needed when n_videos > 0)."""
    n_videos: int = 0
    """Record videos of this many episodes, the first ones in seed order."""
    keep_trajectories: bool = False
    """Keep each episode's observations in its record (for plotting)."""
    env_workers: int = 1
    """Processes stepping the envs of a wave (1: this process; e.g. 2 on 2 cores); same records."""
    step_timeout: float = 120.0
    """Seconds an env may take to be built, reset or stepped in an env worker (env_workers > 1) before
    the worker is killed and that episode recorded as an error."""
    progress: bool = True
    """Show a progress bar over episodes with the running success rate."""

    def rollout_options(self) -> RolloutOptions:
        """These options as a plain `RolloutOptions` (also of a subclass such as `EvalConfig`)."""
        names = [f.name for f in dataclasses.fields(RolloutOptions)]
        return RolloutOptions(**{name: getattr(self, name) for name in names})

    def check(self) -> None:
        """One-line errors for invalid options."""
        if self.n_envs < 1:
            raise ScorePolicyError(f"n_envs must be at least 1, got {self.n_envs}")
        if self.max_steps is not None and self.max_steps < 1:
            raise ScorePolicyError(f"max_steps must be at least 1, got {self.max_steps}")
        if self.n_videos < 0:
            raise ScorePolicyError(f"n_videos must be >= 0, got {self.n_videos}")
        if self.n_videos > 0 and self.video_dir is None:
            raise ScorePolicyError(f"n_videos={self.n_videos} needs a video_dir to write the videos to")
        if self.env_workers < 1:
            raise ScorePolicyError(f"env_workers must be at least 1, got {self.env_workers}")
        if not self.step_timeout > 0:
            raise ScorePolicyError(
                f"step_timeout must be a positive number of seconds, got {self.step_timeout}"
            )


@dataclass(frozen=True)
class EpisodeRules:
    """When an episode ends and what its record keeps (rollout options resolved against the task)."""

    max_steps: int
    """Episode step limit."""
    stop_on_success: bool
    """End an episode at its first successful step."""
    keep_trajectories: bool
    """Keep each episode's observations in its record."""

    @classmethod
    def of(cls, task: Task, opts: RolloutOptions) -> EpisodeRules:
        """The rules of `task` under checked `opts`."""
        opts.check()
        steps = task.max_steps if opts.max_steps is None else int(opts.max_steps)
        return cls(steps, task.stop_on_success, opts.keep_trajectories)


@dataclass(frozen=True)
class EpisodeError:
    """An exception raised by an episode's environment: one-line description and traceback summary."""

    message: str
    """`"<ExceptionType>: <message>"`."""
    traceback: str
    """The innermost frames as `file:line in function`, outermost first (see `traceback_summary`)."""


class Stepper(Protocol):
    """Drives the envs of one wave: reset them with their seeds, step them, close them."""

    def reset(self, seeds: Sequence[int]) -> list[tuple[Observation | None, EpisodeError | None]]:
        """Reset each env with its own seed: (observation, None) or (None, its error)."""
        ...

    def step(self, actions: np.ndarray, active: np.ndarray) -> list[StepResult | EpisodeError | None]:
        """Step the active envs: a result, an error, or None (not stepped)."""
        ...

    def close(self) -> None:
        """Release the envs, never raising."""
        ...


class StepperPool(Protocol):
    """Something that opens a stepper over a wave's envs (e.g. env worker processes)."""

    def open(self, videos: Sequence[Path | None]) -> Stepper:
        """A stepper over one env per video slot (None: no video)."""
        ...


def describe_error(exc: BaseException) -> str:
    """One-line `"<ExceptionType>: <message>"` description of an exception."""
    return f"{type(exc).__name__}: {exc}"


def traceback_summary(exc: BaseException, limit: int = 4) -> str:
    """The last `limit` frames of an exception's traceback outside this module, as `file:line in function`
    joined by ' > ' (outermost first)."""
    frames = [f for f in traceback.extract_tb(exc.__traceback__) if f.filename != __file__][-limit:]
    return " > ".join(f"{Path(f.filename).name}:{f.lineno} in {f.name}" for f in frames)


def _takes(method: Callable[..., Any], name: str) -> bool:
    try:
        return name in inspect.signature(method).parameters
    except (TypeError, ValueError):
        return False


def reset_policy(policy: BatchPolicy, seeds: Sequence[int]) -> None:
    """Reset the policy for a new wave: one noise seed per batch row (`reset(seeds=)`) where it takes
    them, else the wave's first seed (`reset(seed=)`), else a plain `reset()`."""
    if _takes(policy.reset, "seeds"):
        policy.reset(seeds=[int(s) for s in seeds])  # type: ignore[call-arg]
    elif _takes(policy.reset, "seed"):
        policy.reset(seed=int(seeds[0]))  # type: ignore[call-arg]
    else:
        policy.reset()


def info_success(info: Mapping[str, Any]) -> bool:
    """Whether a step info reports success (`is_success` or `success` truthy)."""
    return bool(info.get("is_success", False)) or bool(info.get("success", False))


def _episode_over(
    length: int, terminated: bool, truncated: bool, info: Mapping[str, Any], rules: EpisodeRules
) -> bool:
    return (
        terminated or truncated or length >= rules.max_steps or (rules.stop_on_success and info_success(info))
    )


# ----------------------------------------------------------------------------------------------------------
# Env construction (with video recording) and the in-process stepper


class _VideoRecorder(gym.Wrapper[Any, Any, Any, Any]):
    """Writes the first episode after creation to an mp4, ending where the rollout ends that episode."""

    def __init__(self, env: gym.Env[Any, Any], path: Path, rules: EpisodeRules) -> None:
        super().__init__(env)
        self._path = path
        self._rules = rules
        self._writer: Any = None
        self._started = False
        self._length = 0

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[Any, dict[str, Any]]:
        """Reset the env; the first reset opens the video file and writes the first frame."""
        obs, info = self.env.reset(seed=seed, options=options)
        if not self._started:
            self._started = True
            self._path.parent.mkdir(parents=True, exist_ok=True)
            fps = self.env.metadata.get("render_fps") or 10
            self._writer = imageio.get_writer(str(self._path), fps=fps, macro_block_size=2)
            self._capture()
        return obs, info

    def step(self, action: Any) -> tuple[Any, Any, bool, bool, dict[str, Any]]:
        """Step the env, appending a frame while the recorded episode lasts."""
        obs, reward, terminated, truncated, info = self.env.step(action)
        if self._writer is not None:
            self._length += 1
            self._capture()
            if _episode_over(self._length, bool(terminated), bool(truncated), info, self._rules):
                self._finish()
        return obs, reward, terminated, truncated, info

    def close(self) -> None:
        """Close the video file (if still open) and the env."""
        self._finish()
        super().close()

    def _capture(self) -> None:
        frame = self.env.render()
        if frame is not None:
            self._writer.append_data(np.asarray(frame, dtype=np.uint8))

    def _finish(self) -> None:
        if self._writer is not None:
            writer, self._writer = self._writer, None
            writer.close()


def _make_env(task: Task, video: Path | None, rules: EpisodeRules) -> gym.Env[Any, Any]:
    env = task.make_env("rgb_array" if video is not None else None)
    return env if video is None else _VideoRecorder(env, video, rules)


def _logged_error(what: str, exc: Exception) -> EpisodeError:
    error = describe_error(exc)
    log.warning("%s failed: %s", what, error, exc_info=log.isEnabledFor(logging.DEBUG))
    return EpisodeError(error, traceback_summary(exc))


EnvHook = Callable[[int], None]
"""Called with an env's index before each operation on it (creation, reset, step): a sign of progress."""


class SerialStepper:
    """Plain envs stepped one at a time; each exception is returned as that env's error."""

    def __init__(
        self,
        task: Task,
        videos: Sequence[Path | None],
        rules: EpisodeRules,
        hook: EnvHook | None = None,
        skip: Mapping[int, EpisodeError] | None = None,
    ) -> None:
        """Build one env per video slot; `hook(i)` precedes every operation on env i; envs in `skip` are
        not built and report their given error."""
        self.hook: EnvHook = hook or (lambda i: None)
        self.envs: list[gym.Env[Any, Any] | None] = []
        self.errors: list[EpisodeError | None] = []
        self.seeds: list[int] = []
        for i, video in enumerate(videos):
            if skip and i in skip:
                self.envs.append(None)
                self.errors.append(skip[i])
                continue
            self.hook(i)
            try:
                self.envs.append(_make_env(task, video, rules))
                self.errors.append(None)
            except Exception as exc:
                self.envs.append(None)
                self.errors.append(_logged_error("creating an env", exc))

    def reset(self, seeds: Sequence[int]) -> list[tuple[Observation | None, EpisodeError | None]]:
        """Reset each env that was built; report creation or reset errors per env."""
        self.seeds = [int(s) for s in seeds]
        out: list[tuple[Observation | None, EpisodeError | None]] = []
        for i, (env, error, seed) in enumerate(zip(self.envs, self.errors, self.seeds)):
            if env is None:
                out.append((None, error))
                continue
            self.hook(i)
            try:
                obs, _ = env.reset(seed=seed)
                out.append((as_observation(obs), None))
            except Exception as exc:
                out.append((None, _logged_error(f"resetting the env of seed {seed}", exc)))
        return out

    def step(self, actions: np.ndarray, active: np.ndarray) -> list[StepResult | EpisodeError | None]:
        """Step only the active envs (None for the others); an env's exception becomes its error."""
        out: list[StepResult | EpisodeError | None] = []
        for i, env in enumerate(self.envs):
            if not active[i] or env is None:
                out.append(None)
                continue
            self.hook(i)
            try:
                obs, reward, terminated, truncated, info = env.step(actions[i])
                out.append(
                    (as_observation(obs), float(reward), bool(terminated), bool(truncated), dict(info))
                )
            except Exception as exc:
                out.append(_logged_error(f"stepping the env of seed {self.seeds[i]}", exc))
        return out

    def close(self) -> None:
        """Close every env, never raising."""
        for env in self.envs:
            if env is not None:
                _close_quietly(env)
        self.envs = [None] * len(self.envs)


def _close_quietly(env: gym.Env[Any, Any]) -> None:
    try:
        env.close()
    except Exception as exc:
        log.debug("closing env failed: %s", describe_error(exc))


# ----------------------------------------------------------------------------------------------------------
# One episode's bookkeeping, progress, and the wave loop


class _Episode:
    """The running state of one episode and, once it is over, its record."""

    def __init__(self, seed: int, video: Path | None, rules: EpisodeRules) -> None:
        self.seed = seed
        self.video = video
        self.rules = rules
        self.obs: Observation | None = None
        self.infos: list[dict[str, Any]] = []
        self.ret = 0.0
        self.length = 0
        self.observations: list[list[float]] = []
        self.record: dict[str, Any] | None = None

    @property
    def done(self) -> bool:
        """Whether the episode is over (its record is set)."""
        return self.record is not None

    def start(self, obs: Observation | None, error: EpisodeError | None) -> None:
        """Take the reset observation, or record the reset/creation error."""
        if error is not None or obs is None:
            self._fail(error or EpisodeError("reset returned no observation", ""))
        else:
            self._observe(obs)

    def advance(self, result: StepResult | EpisodeError, task: Task) -> None:
        """Account for one env step (or its error) and close the episode if it is over."""
        if isinstance(result, EpisodeError):
            self._fail(result)
            return
        obs, reward, terminated, truncated, info = result
        self._observe(obs)
        self.ret += reward
        self.length += 1
        self.infos.append(info)
        if _episode_over(self.length, terminated, truncated, info, self.rules):
            self._complete(task)

    def policy_obs(self, task: Task) -> Observation:
        """The observation to feed the policy: the latest one (frozen once the episode is over)."""
        return self.obs if self.obs is not None else zero_observation(task)

    def _observe(self, obs: Observation) -> None:
        self.obs = copy_observation(obs)
        if self.rules.keep_trajectories:
            self.observations.append(state_of(self.obs).tolist())

    def _complete(self, task: Task) -> None:
        try:
            metrics = task.episode_metrics(self.infos)
        except Exception as exc:
            self._fail(EpisodeError(f"episode_metrics raised {describe_error(exc)}", traceback_summary(exc)))
            return
        record: dict[str, Any] = {"seed": self.seed, "length": self.length, "return": self.ret, **metrics}
        if self.rules.keep_trajectories:
            record["observations"] = self.observations
        if self.video is not None and self.video.is_file():
            record["video"] = str(self.video)
        self.record = record

    def _fail(self, error: EpisodeError) -> None:
        self.record = {
            "seed": self.seed,
            "error": error.message,
            "traceback": error.traceback,
            "success": 0.0,
        }


class Progress:
    """A tqdm bar over finished episodes showing the running success rate."""

    def __init__(self, total: int, enabled: bool) -> None:
        self._bar = tqdm(total=total, disable=not enabled, desc="rollouts", unit="ep", dynamic_ncols=True)
        self._done, self._successes = 0, 0.0

    def finished(self, record: Mapping[str, Any]) -> None:
        """Count one finished episode."""
        self._done += 1
        self._successes += float(record.get("success", 0.0))
        self._bar.set_postfix(success=f"{self._successes / self._done:.3f}", refresh=False)
        self._bar.update(1)

    def close(self) -> None:
        """Close the bar."""
        self._bar.close()


EpisodeExtras = Callable[[int], dict[str, Any]]
"""A policy's optional `episode_extras(row)`: fields it adds to the record of batch row `row`'s episode,
called once when that episode ends, before the policy's next step (e.g. a run-time monitor's alarms)."""


def _finish(record: dict[str, Any], row: int, extras: EpisodeExtras | None, bar: Progress) -> None:
    if extras is not None:
        for key, value in extras(row).items():
            record.setdefault(key, value)  # the episode's own fields are never overridden
    bar.finished(record)


def _drive(
    policy: BatchPolicy,
    task: Task,
    stepper: Stepper,
    episodes: list[_Episode],
    bar: Progress,
) -> list[dict[str, Any]]:
    """Run one wave to the end: reset (and reseed) the policy and every env, then step them together."""
    seeds = [ep.seed for ep in episodes]
    reset_policy(policy, seeds)
    extras = getattr(policy, "episode_extras", None)
    for row, (ep, (obs, error)) in enumerate(zip(episodes, stepper.reset(seeds))):
        ep.start(obs, error)
        if ep.record is not None:
            _finish(ep.record, row, extras, bar)
    while not all(ep.done for ep in episodes):
        batch = stack_observations([ep.policy_obs(task) for ep in episodes])
        actions = np.asarray(policy.select_action(batch))
        if actions.shape[:1] != (len(episodes),):
            raise ValueError(f"policy.select_action returned shape {actions.shape} for {len(episodes)} envs")
        active = np.array([not ep.done for ep in episodes])
        for row, (ep, result) in enumerate(zip(episodes, stepper.step(actions, active))):
            if ep.done or result is None:
                continue
            ep.advance(result, task)
            if ep.record is not None:
                _finish(ep.record, row, extras, bar)
    return [ep.record for ep in episodes if ep.record is not None]


def run_wave(
    policy: BatchPolicy,
    task: Task,
    seeds: Sequence[int],
    videos: Sequence[Path | None],
    rules: EpisodeRules,
    bar: Progress,
    pool: StepperPool | None = None,
) -> list[dict[str, Any]]:
    """Run one wave: its envs stepped in this process, or by `pool` (env worker processes)."""
    stepper = pool.open(videos) if pool is not None else SerialStepper(task, videos, rules)
    try:
        return _drive(policy, task, stepper, [_Episode(s, v, rules) for s, v in zip(seeds, videos)], bar)
    finally:
        stepper.close()

"""Seeded, vectorised policy rollouts: one record per episode, identical for any batch size.

Episodes run in waves of up to `n_envs` environments that start together and step together, because a
batch policy keeps one observation history and action queue per batch row. Each environment of a wave
is reset with its own seed (episode i uses seeds[i]); envs are built per wave from `task.make_env` and
never auto-reset, so what an episode sees depends only on its seed and the policy, not on `n_envs` or
on sync/async vectorisation.

A vector env must step all its envs together, so envs whose episode is over keep being stepped with
the policy's (ignored) actions and their frozen last observation is what the policy sees; an env that
terminated or truncated is first re-reset through `reset_mask` (autoreset is disabled and gymnasium
refuses to step a finished env). Step infos travel through the vector env boxed, one opaque object per
env, because gymnasium's info batching coerces every env's value to the first env's type.

If an environment raises (at creation, reset or step) the vector env aborts the whole wave. The wave is
then re-run from its start with plain, un-vectorised envs stepped one by one (finished envs are not
stepped), where each exception is attributed to its own episode: that episode is recorded with its seed,
error and a traceback summary, and the others are unaffected. An env that only raises after its episode
ended costs a re-run, not a record.

Sampling noise: at the start of every wave the policy is reset with `seed=` the wave's first env seed
(when its `reset` takes a seed, as `ChunkPolicy.reset` does), so every wave's results depend only on its
seeds, not on which waves ran before it or in which process: the same seeds and `n_envs` give identical
records locally, on Ray workers, and when an interrupted evaluation resumes.
"""

from __future__ import annotations

import inspect
import logging
import traceback
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, Protocol

import gymnasium as gym
import imageio.v2 as imageio
import numpy as np
from gymnasium import spaces
from tqdm.auto import tqdm

from scorepolicy.core.task import Task
from scorepolicy.errors import ScorePolicyError

log = logging.getLogger(__name__)

VectorMode = Literal["sync", "async"]
StepResult = tuple[np.ndarray, float, bool, bool, dict[str, Any]]
"""(observation, reward, terminated, truncated, info) of one env step."""


class BatchPolicy(Protocol):
    """A policy acting on a batch of B environments that start (reset) and step together.

    If `reset` accepts a keyword `seed`, each wave reseeds the policy's sampling noise with it.
    """

    def reset(self) -> None:
        """Clear the observation history and action queue of every batch row."""
        ...

    def select_action(self, obs: np.ndarray) -> np.ndarray:
        """Map observations (B, obs_dim) float32 to actions (B, action_dim)."""
        ...


@dataclass(frozen=True)
class RolloutOptions:
    """How every episode of a rollout runs."""

    max_steps: int
    """Episode step limit."""
    stop_on_success: bool
    """End an episode at its first successful step."""
    keep_trajectories: bool
    """Keep each episode's observations in its record."""
    env_workers: int = 1
    """Processes stepping a wave's envs (1: this process, through a gymnasium vector env)."""


@dataclass(frozen=True)
class EpisodeError:
    """An exception raised by an episode's environment: one-line description and traceback summary."""

    message: str
    """`"<ExceptionType>: <message>"`."""
    traceback: str
    """The innermost frames as `file:line in function`, outermost first (see `traceback_summary`)."""


class Stepper(Protocol):
    """Drives the envs of one wave: reset them with their seeds, step them, close them."""

    def reset(self, seeds: Sequence[int]) -> list[tuple[np.ndarray | None, EpisodeError | None]]:
        """Reset each env with its own seed: (observation, None) or (None, its error)."""
        ...

    def step(self, actions: np.ndarray, active: np.ndarray) -> list[StepResult | EpisodeError | None]:
        """Step the envs (at least the active ones): a result, an error, or None (not stepped)."""
        ...

    def close(self) -> None:
        """Release the envs, never raising."""
        ...


class EnvFailure(Exception):
    """An exception raised by environment code inside a vector env (wraps the original)."""


def describe_error(exc: BaseException) -> str:
    """One-line `"<ExceptionType>: <message>"` description of an exception."""
    return f"{type(exc).__name__}: {exc}"


def traceback_summary(exc: BaseException, limit: int = 4) -> str:
    """The last `limit` frames of an exception's traceback outside this module, as `file:line in function`
    joined by ' > ' (outermost first)."""
    frames = [f for f in traceback.extract_tb(exc.__traceback__) if f.filename != __file__][-limit:]
    return " > ".join(f"{Path(f.filename).name}:{f.lineno} in {f.name}" for f in frames)


def reset_policy(policy: BatchPolicy, noise_seed: int) -> None:
    """Reset the policy for a new wave; a policy whose `reset` takes `seed` is reseeded with noise_seed."""
    try:
        takes_seed = "seed" in inspect.signature(policy.reset).parameters
    except (TypeError, ValueError):
        takes_seed = False
    if takes_seed:
        policy.reset(seed=noise_seed)  # type: ignore[call-arg]
    else:
        policy.reset()


def info_success(info: Mapping[str, Any]) -> bool:
    """Whether a step info reports success (`is_success` or `success` truthy)."""
    return bool(info.get("is_success", False)) or bool(info.get("success", False))


def _episode_over(
    length: int, terminated: bool, truncated: bool, info: Mapping[str, Any], opts: RolloutOptions
) -> bool:
    return (
        terminated or truncated or length >= opts.max_steps or (opts.stop_on_success and info_success(info))
    )


# ----------------------------------------------------------------------------------------------------------
# Vector info conversion


def _to_python(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.copy()
    return value


def unbatch_infos(infos: Mapping[str, Any], n: int) -> list[dict[str, Any]]:
    """Split a gymnasium vector-env info dict (arrays with `_key` masks) back into n per-env dicts."""
    out: list[dict[str, Any]] = [{} for _ in range(n)]
    for key, value in infos.items():
        if key.startswith("_") and key[1:] in infos:
            continue  # the mask of `key[1:]`
        mask = infos.get(f"_{key}")
        present = np.ones(n, dtype=bool) if mask is None else np.asarray(mask, dtype=bool)
        rows = unbatch_infos(value, n) if isinstance(value, Mapping) else None
        for i in np.flatnonzero(present):
            out[i][key] = rows[i] if rows is not None else _to_python(value[i])
    return out


_INFO_KEY = "scorepolicy_step_info"


class _BoxedInfo:
    """An env's step info as one opaque value, so vector batching cannot coerce its types."""

    __slots__ = ("info",)

    def __init__(self, info: dict[str, Any]) -> None:
        self.info = info


class _InfoBoxer(gym.Wrapper[Any, Any, Any, Any]):
    """Passes step infos through a vector env untouched.

    Gymnasium batches each info key into an array typed after the first env's value (an int 0 from env 0
    turns env 1's 0.25 into 0), so infos travel boxed as one object per env and are unboxed afterwards.
    """

    def step(self, action: Any) -> tuple[Any, Any, bool, bool, dict[str, Any]]:
        """Step the env and box its info."""
        obs, reward, terminated, truncated, info = self.env.step(action)
        return obs, reward, terminated, truncated, {_INFO_KEY: _BoxedInfo(dict(info))}


def _unbox(info: dict[str, Any]) -> dict[str, Any]:
    boxed = info.get(_INFO_KEY)
    return boxed.info if isinstance(boxed, _BoxedInfo) else info


# ----------------------------------------------------------------------------------------------------------
# Env construction: video recording and a stand-in for envs that fail to build


class _VideoRecorder(gym.Wrapper[Any, Any, Any, Any]):
    """Writes the first episode after creation to an mp4, ending where the rollout ends that episode."""

    def __init__(self, env: gym.Env[Any, Any], path: Path, opts: RolloutOptions) -> None:
        super().__init__(env)
        self._path = path
        self._opts = opts
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
            if _episode_over(self._length, bool(terminated), bool(truncated), info, self._opts):
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


class _BrokenEnv(gym.Env[np.ndarray, np.ndarray]):
    """Stands in for an env whose creation raised inside a vector env; raises that error on reset."""

    def __init__(self, error: str, obs_dim: int, action_dim: int) -> None:
        self._error = error
        self.observation_space = spaces.Box(-np.inf, np.inf, (obs_dim,), np.float32)
        self.action_space = spaces.Box(-np.inf, np.inf, (action_dim,), np.float32)

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[np.ndarray, dict[str, Any]]:
        """Raise the creation error."""
        raise RuntimeError(f"env creation failed: {self._error}")

    def step(self, action: np.ndarray) -> tuple[np.ndarray, float, bool, bool, dict[str, Any]]:
        """Raise the creation error."""
        raise RuntimeError(f"env creation failed: {self._error}")


def _make_env(task: Task, video: Path | None, opts: RolloutOptions) -> gym.Env[Any, Any]:
    env = task.make_env("rgb_array" if video is not None else None)
    return env if video is None else _VideoRecorder(env, video, opts)


class _EnvFactory:
    """Picklable env factory for vector envs (infos boxed); a creation error becomes a `_BrokenEnv`."""

    def __init__(self, task: Task, video: Path | None, opts: RolloutOptions) -> None:
        self.task, self.video, self.opts = task, video, opts

    def __call__(self) -> gym.Env[Any, Any]:
        try:
            return _InfoBoxer(_make_env(self.task, self.video, self.opts))
        except Exception as exc:
            return _BrokenEnv(describe_error(exc), self.task.obs_dim, self.task.action_dim)


# ----------------------------------------------------------------------------------------------------------
# Steppers: drive the envs of one wave (vectorised, or one by one with per-env error capture)


class _VectorStepper:
    """A gymnasium vector env with autoreset disabled; any env exception is raised as `EnvFailure`."""

    def __init__(
        self, task: Task, videos: Sequence[Path | None], opts: RolloutOptions, vector: VectorMode
    ) -> None:
        fns = [_EnvFactory(task, video, opts) for video in videos]
        mode = gym.vector.AutoresetMode.DISABLED
        self.vec: gym.vector.SyncVectorEnv[Any, Any] | gym.vector.AsyncVectorEnv
        try:
            if vector == "async":
                self.vec = gym.vector.AsyncVectorEnv(fns, autoreset_mode=mode)
            else:
                self.vec = gym.vector.SyncVectorEnv(fns, autoreset_mode=mode)
        except Exception as exc:
            raise EnvFailure(describe_error(exc)) from exc
        self.n = len(fns)
        self._seeds: list[int] = []
        self._needs_reset = np.zeros(self.n, dtype=bool)

    def reset(self, seeds: Sequence[int]) -> list[tuple[np.ndarray | None, EpisodeError | None]]:
        """Reset every env with its own seed."""
        self._seeds = [int(s) for s in seeds]
        try:
            obs, _ = self.vec.reset(seed=list(self._seeds))
        except Exception as exc:
            raise EnvFailure(describe_error(exc)) from exc
        self._needs_reset[:] = False
        return [(np.asarray(obs[i]), None) for i in range(self.n)]

    def step(self, actions: np.ndarray, active: np.ndarray) -> list[StepResult | EpisodeError | None]:
        """Step all envs (finished ones too, to keep the batch; their results are ignored)."""
        try:
            if self._needs_reset.any():
                # With autoreset disabled a terminated env may not be stepped again: re-seed it to idle.
                self.vec.reset(seed=list(self._seeds), options={"reset_mask": self._needs_reset.copy()})
            obs, rewards, terminated, truncated, infos = self.vec.step(actions)
        except Exception as exc:
            raise EnvFailure(describe_error(exc)) from exc
        self._needs_reset = np.logical_or(terminated, truncated)
        per_env = [_unbox(info) for info in unbatch_infos(infos, self.n)]
        return [
            (np.asarray(obs[i]), float(rewards[i]), bool(terminated[i]), bool(truncated[i]), per_env[i])
            for i in range(self.n)
        ]

    def close(self) -> None:
        """Close the vector env, never raising."""
        try:
            self.vec.close()
        except Exception as exc:  # a worker may already be gone after a failure
            log.debug("closing vector env failed: %s", describe_error(exc))


def _logged_error(what: str, exc: Exception) -> EpisodeError:
    error = describe_error(exc)
    log.warning("%s failed: %s", what, error, exc_info=log.isEnabledFor(logging.DEBUG))
    return EpisodeError(error, traceback_summary(exc))


class SerialStepper:
    """Plain envs stepped one at a time; each exception is returned as that env's error string."""

    def __init__(self, task: Task, videos: Sequence[Path | None], opts: RolloutOptions) -> None:
        self.envs: list[gym.Env[Any, Any] | None] = []
        self.errors: list[EpisodeError | None] = []
        self.seeds: list[int] = []
        for video in videos:
            try:
                self.envs.append(_make_env(task, video, opts))
                self.errors.append(None)
            except Exception as exc:
                self.envs.append(None)
                self.errors.append(_logged_error("creating an env", exc))

    def reset(self, seeds: Sequence[int]) -> list[tuple[np.ndarray | None, EpisodeError | None]]:
        """Reset each env that was built; report creation or reset errors per env."""
        self.seeds = [int(s) for s in seeds]
        out: list[tuple[np.ndarray | None, EpisodeError | None]] = []
        for env, error, seed in zip(self.envs, self.errors, self.seeds):
            if env is None:
                out.append((None, error))
                continue
            try:
                obs, _ = env.reset(seed=seed)
                out.append((np.asarray(obs), None))
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
            try:
                obs, reward, terminated, truncated, info = env.step(actions[i])
                out.append((np.asarray(obs), float(reward), bool(terminated), bool(truncated), dict(info)))
            except Exception as exc:
                out.append(_logged_error(f"stepping the env of seed {self.seeds[i]}", exc))
        return out

    def close(self) -> None:
        """Close every env, never raising."""
        for env in self.envs:
            if env is None:
                continue
            try:
                env.close()
            except Exception as exc:
                log.debug("closing env failed: %s", describe_error(exc))


# ----------------------------------------------------------------------------------------------------------
# One episode's bookkeeping, progress, and the wave loop


class _Episode:
    """The running state of one episode and, once it is over, its record."""

    def __init__(self, seed: int, video: Path | None, opts: RolloutOptions) -> None:
        self.seed = seed
        self.video = video
        self.opts = opts
        self.obs: np.ndarray | None = None
        self.infos: list[dict[str, Any]] = []
        self.ret = 0.0
        self.length = 0
        self.observations: list[list[float]] = []
        self.record: dict[str, Any] | None = None

    @property
    def done(self) -> bool:
        """Whether the episode is over (its record is set)."""
        return self.record is not None

    def start(self, obs: np.ndarray | None, error: EpisodeError | None) -> None:
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
        if _episode_over(self.length, terminated, truncated, info, self.opts):
            self._complete(task)

    def policy_obs(self, obs_dim: int) -> np.ndarray:
        """The observation to feed the policy: the latest one (frozen once the episode is over)."""
        return self.obs if self.obs is not None else np.zeros(obs_dim, dtype=np.float32)

    def _observe(self, obs: np.ndarray) -> None:
        self.obs = np.array(obs, dtype=np.float32)
        if self.opts.keep_trajectories:
            self.observations.append(self.obs.tolist())

    def _complete(self, task: Task) -> None:
        try:
            metrics = task.episode_metrics(self.infos)
        except Exception as exc:
            self._fail(EpisodeError(f"episode_metrics raised {describe_error(exc)}", traceback_summary(exc)))
            return
        record: dict[str, Any] = {"seed": self.seed, "length": self.length, "return": self.ret, **metrics}
        if self.opts.keep_trajectories:
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
    """A tqdm bar over finished episodes showing the running success rate; can roll back a wave."""

    def __init__(self, total: int, enabled: bool) -> None:
        self._bar = tqdm(total=total, disable=not enabled, desc="rollouts", unit="ep", dynamic_ncols=True)
        self._done, self._successes = 0, 0.0
        self._mark = (0, 0.0)

    def mark(self) -> None:
        """Remember the current count (start of a wave)."""
        self._mark = (self._done, self._successes)

    def rollback(self) -> None:
        """Return to the last mark (the wave is being re-run)."""
        self._done, self._successes = self._mark
        self._bar.n = self._done
        rate = f"{self._successes / self._done:.3f}" if self._done else "-"
        self._bar.set_postfix(success=rate, refresh=False)
        self._bar.refresh()

    def finished(self, record: Mapping[str, Any]) -> None:
        """Count one finished episode."""
        self._done += 1
        self._successes += float(record.get("success", 0.0))
        self._bar.set_postfix(success=f"{self._successes / self._done:.3f}", refresh=False)
        self._bar.update(1)

    def close(self) -> None:
        """Close the bar."""
        self._bar.close()


def _drive(
    policy: BatchPolicy,
    task: Task,
    stepper: Stepper,
    episodes: list[_Episode],
    bar: Progress,
) -> list[dict[str, Any]]:
    """Run one wave to the end: reset (and reseed) the policy and every env, then step them together."""
    reset_policy(policy, episodes[0].seed)
    for ep, (obs, error) in zip(episodes, stepper.reset([ep.seed for ep in episodes])):
        ep.start(obs, error)
        if ep.record is not None:
            bar.finished(ep.record)
    while not all(ep.done for ep in episodes):
        batch = np.stack([ep.policy_obs(task.obs_dim) for ep in episodes]).astype(np.float32)
        actions = np.asarray(policy.select_action(batch))
        if actions.shape[:1] != (len(episodes),):
            raise ValueError(f"policy.select_action returned shape {actions.shape} for {len(episodes)} envs")
        active = np.array([not ep.done for ep in episodes])
        for ep, result in zip(episodes, stepper.step(actions, active)):
            if ep.done or result is None:
                continue
            ep.advance(result, task)
            if ep.record is not None:
                bar.finished(ep.record)
    return [ep.record for ep in episodes if ep.record is not None]


def _run_with(
    policy: BatchPolicy,
    task: Task,
    stepper: Stepper,
    seeds: Sequence[int],
    videos: Sequence[Path | None],
    opts: RolloutOptions,
    bar: Progress,
) -> list[dict[str, Any]]:
    """Drive fresh episodes of the wave with `stepper`, closing it whatever happens."""
    try:
        return _drive(policy, task, stepper, [_Episode(s, v, opts) for s, v in zip(seeds, videos)], bar)
    finally:
        stepper.close()


def run_wave(
    policy: BatchPolicy,
    task: Task,
    seeds: Sequence[int],
    videos: Sequence[Path | None],
    opts: RolloutOptions,
    vector: VectorMode,
    bar: Progress,
) -> list[dict[str, Any]]:
    """Run one wave vectorised (or over `opts.env_workers` processes); if an env raises inside a vector
    env, re-run the wave serially to pin the error on its episode."""
    bar.mark()
    if opts.env_workers > 1:
        from scorepolicy.evaluation.env_workers import ShardedStepper

        try:
            sharded = ShardedStepper(task, videos, opts, opts.env_workers)
            return _run_with(policy, task, sharded, seeds, videos, opts, bar)
        except EnvFailure as exc:
            log.warning("env workers failed in the wave from seed %d (%s); re-running it here", seeds[0], exc)
            bar.rollback()
    try:
        vectorised = _VectorStepper(task, videos, opts, vector)
        return _run_with(policy, task, vectorised, seeds, videos, opts, bar)
    except EnvFailure as exc:
        log.warning(
            "an env raised in the wave from seed %d (%s); re-running the wave env by env", seeds[0], exc
        )
        bar.rollback()
    return _run_with(policy, task, SerialStepper(task, videos, opts), seeds, videos, opts, bar)


def check_rollout_args(
    n_envs: int, vector: str, max_steps: int, video_dir: Path | None, n_videos: int
) -> None:
    if n_envs < 1:
        raise ScorePolicyError(f"n_envs must be at least 1, got {n_envs}")
    if vector not in ("sync", "async"):
        raise ScorePolicyError(f"vector must be 'sync' or 'async', got {vector!r}")
    if max_steps < 1:
        raise ScorePolicyError(f"max_steps must be at least 1, got {max_steps}")
    if n_videos < 0:
        raise ScorePolicyError(f"n_videos must be >= 0, got {n_videos}")
    if n_videos > 0 and video_dir is None:
        raise ScorePolicyError(f"n_videos={n_videos} needs a video_dir to write the videos to")

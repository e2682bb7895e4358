"""The `pusht-image` env: how closely its frames match the recorded ones, and how fast it steps.

Agreement: for every `stride`-th recorded step of the Push-T replay zarr, the env is reset to the recorded
state (`data/state`, the angle quirk compensated) and its 96-px frame is compared with the recorded one
(`data/img`): mean |difference| (0..255 units), the fraction of pixels differing by more than 32 in some
channel, and the fraction of pixels exactly equal. Speed: the recorded actions of the first episodes are
replayed in `pusht-image` (physics + frame) and in `pusht` (physics only), one env, one thread; the
renderer alone is timed against gym-pusht's own drawing of the same frame. Prints a table and writes
benchmarks/results/pusht_image_env.json.

    python benchmarks/pusht_image_env.py
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import tyro

from scorepolicy.core.episodes import Episodes
from scorepolicy.data.formats import load_dataset
from scorepolicy.envs.pusht_image import IMAGE_KEY, make_pusht_image_env
from scorepolicy.envs.registry import get_task
from scorepolicy.files import atomic_write_json
from scorepolicy.provenance import provenance

RESULTS = Path(__file__).parent / "results"
SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"
BIG_DIFF = 32


@dataclass
class Args:
    """pusht-image env benchmark options."""

    data: Path = SHARED / "pusht_cchi_v7_replay.zarr"
    """The Push-T replay zarr."""
    stride: int = 1
    """Compare every stride-th recorded frame (1: all 25,650)."""
    speed_episodes: int = 10
    """Episodes whose recorded actions are replayed for the steps/s figures."""
    render_repeats: int = 500
    """Frames drawn to time the renderer alone."""
    out: Path = RESULTS / "pusht_image_env.json"
    """Result JSON."""


def agreement(episodes: Episodes, stride: int) -> dict[str, Any]:
    """Rendered vs recorded frames at every stride-th step."""
    env = make_pusht_image_env()
    states, frames = episodes.data["state"], episodes.data["img"]
    rows = np.arange(0, episodes.n_steps, stride)
    mean_abs = np.empty(len(rows))
    big = np.empty(len(rows))
    exact = np.empty(len(rows))
    for k, row in enumerate(rows):
        obs, _ = env.reset(options={"reset_to_state": states[row]})
        diff = np.abs(obs[IMAGE_KEY].astype(np.int16) - frames[row].astype(np.int16))
        worst_channel = diff.max(axis=-1)
        mean_abs[k] = diff.mean()
        big[k], exact[k] = (worst_channel > BIG_DIFF).mean(), (worst_channel == 0).mean()
    return {
        "frames_compared": len(rows),
        "mean_abs_diff_mean": float(mean_abs.mean()),
        "mean_abs_diff_max_frame": float(mean_abs.max()),
        "frac_pixels_diff_gt32_mean": float(big.mean()),
        "frac_pixels_diff_gt32_max_frame": float(big.max()),
        "frac_pixels_exact_mean": float(exact.mean()),
        "frac_pixels_exact_min_frame": float(exact.min()),
        "worst_row": int(rows[int(np.argmax(mean_abs))]),
    }


def replay_speed(task_name: str, episodes: Episodes, n_episodes: int) -> dict[str, float]:
    """Env steps per second (wall clock, and per CPU second of this process) replaying recorded actions
    from each episode's first state."""
    env = get_task(task_name).make_env(None)
    actions, states = episodes.data["action"], episodes.data["state"]
    steps, wall, cpu = 0, 0.0, 0.0
    for i in range(min(n_episodes, episodes.n_episodes)):
        part = episodes.episode_slice(i)
        env.reset(options={"reset_to_state": states[part.start]})
        t0, c0 = time.perf_counter(), time.process_time()
        for action in actions[part]:
            env.step(action)
        wall += time.perf_counter() - t0
        cpu += time.process_time() - c0
        steps += part.stop - part.start
    return {"steps": steps, "steps_per_s": steps / wall, "steps_per_cpu_s": steps / cpu}


def _rate(draw: Any, repeats: int) -> tuple[float, float]:
    """(calls per wall second, calls per CPU second) of `draw()`."""
    t0, c0 = time.perf_counter(), time.process_time()
    for _ in range(repeats):
        draw()
    return repeats / (time.perf_counter() - t0), repeats / max(time.process_time() - c0, 1e-9)


def render_speed(repeats: int) -> dict[str, float]:
    """Frames per second of the renderer and of gym-pusht's own drawing (+ resize) of the same state."""
    env = make_pusht_image_env()
    env.reset(seed=100000)
    base: Any = env.unwrapped
    ours, ours_cpu = _rate(env.renderer.frame, repeats)
    theirs, theirs_cpu = _rate(lambda: base._get_img(base._draw(), 96, 96), repeats)
    return {
        "renderer_frames_per_s": ours,
        "renderer_frames_per_cpu_s": ours_cpu,
        "gym_pusht_frames_per_s": theirs,
        "gym_pusht_frames_per_cpu_s": theirs_cpu,
    }


def main(args: Args) -> None:
    episodes = load_dataset(args.data, images=True)
    load_start = os.getloadavg()[0]
    image, state = (replay_speed(name, episodes, args.speed_episodes) for name in ("pusht-image", "pusht"))
    speed = {
        "pusht_image_steps_per_s": image["steps_per_s"],
        "pusht_image_steps_per_cpu_s": image["steps_per_cpu_s"],
        "pusht_steps_per_s": state["steps_per_s"],
        "pusht_steps_per_cpu_s": state["steps_per_cpu_s"],
        **render_speed(args.render_repeats),
    }
    agree = agreement(episodes, args.stride)
    print(f"{'frames':>7} {'mean|d|':>8} {'worst':>7} {'>32 px':>8} {'worst':>7} {'exact':>7}")
    print(
        f"{agree['frames_compared']:>7} {agree['mean_abs_diff_mean']:>8.3f} {agree['mean_abs_diff_max_frame']:>7.3f} "
        f"{agree['frac_pixels_diff_gt32_mean']:>8.5f} {agree['frac_pixels_diff_gt32_max_frame']:>7.4f} "
        f"{agree['frac_pixels_exact_mean']:>7.4f}"
    )
    print(
        f"steps/s (per CPU s): pusht-image {speed['pusht_image_steps_per_s']:.0f} "
        f"({speed['pusht_image_steps_per_cpu_s']:.0f}), pusht {speed['pusht_steps_per_s']:.0f} "
        f"({speed['pusht_steps_per_cpu_s']:.0f}); frames/s: renderer {speed['renderer_frames_per_s']:.0f} "
        f"({speed['renderer_frames_per_cpu_s']:.0f}), gym-pusht {speed['gym_pusht_frames_per_s']:.0f} "
        f"({speed['gym_pusht_frames_per_cpu_s']:.0f}) (load average {load_start:.2f} on {os.cpu_count()} cores)"
    )
    result = {"agreement": agree, "speed": speed, "load_avg_1min": load_start, "provenance": provenance()}
    atomic_write_json(args.out, result)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main(tyro.cli(Args))

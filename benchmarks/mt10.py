"""Meta-World MT10 benchmark: scripted-expert demonstrations → one goal-conditioned model → per-task success.

1. Demonstrations: 50 successful scripted-expert episodes per task (generated if --data is missing).
2. Two models trained with the same settings: MoDE (4 experts, top-2, noise-only routing) and a dense
   transformer (the same network with one expert as wide as MoDE's two active ones).
3. Per-task success at NFE 3 with Wilson 95% intervals, 50 episodes per task on goals (object and
   target positions) the demonstrations never used (evaluation seeds 0.., demonstration seeds 10^7..).
4. Parameters (total / active per call) and latency per chunk at batch 1, one thread: MoDE with and
   without the per-step expert cache, and the dense transformer.
5. Level-2 minibatching: K = 1 (128 conditions) vs K = 8 (16 conditions × 8 noised copies), equal
   denoising examples per step, raced in alternating slices in one process; validation loss against
   CPU seconds (one thread, so other jobs on the machine do not bias the race).
6. Guidance sweep λ ∈ {0, 1, 1.5, 2} of the MoDE model, plus a control: λ = 1 commanded with another
   episode's goal of the same task (the success of expert-like motions toward the wrong goal, i.e.
   chance). Motions are compared by the distance of visited hand positions to the demonstrations'.

    python benchmarks/mt10.py                       # train both models, then evaluate (≈2 h on 2 cores)
    python benchmarks/mt10.py --no-train --mode-run runs/mt10_mode --dense-run runs/mt10_dense
"""

from __future__ import annotations

import functools
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import tyro

from scorepolicy import api
from scorepolicy.commands.generate import Generate, run_generate
from scorepolicy.data.zarr_replay import read_replay_zarr
from scorepolicy.envs.registry import get_task
from scorepolicy.evaluation import EvalConfig, evaluate
from scorepolicy.files import atomic_write_json, read_json, to_dict
from scorepolicy.models import MoDEConfig
from scorepolicy.policies import ChunkPolicy, PolicyConfig, ScorePolicy
from scorepolicy.provenance import provenance
from scorepolicy.training import TrainConfig
from scorepolicy.training.loop import to_torch, validation_loss

RESULTS = Path(__file__).parent / "results"
TASK = "metaworld-mt10"
GOAL_TASKS = ("reach-v3", "push-v3", "pick-place-v3", "peg-insert-side-v3")
"""Tasks whose target is not given away by the scene (a free point in space, or a placement spot): only
on these can a policy without the goal fail for lack of it."""


def goal_task_success(result: dict[str, Any]) -> float:
    """Mean success over GOAL_TASKS."""
    return float(np.mean([result["per_task"][t]["success_rate"] for t in GOAL_TASKS]))


@dataclass
class Args:
    """MT10 benchmark options."""

    data: Path = Path("data/mt10")
    """Demonstrations (a replay zarr written by `scorepolicy data generate metaworld`)."""
    mode_run: Path = Path("runs/bench_mt10/mode")
    """Run directory of the MoDE model."""
    dense_run: Path = Path("runs/bench_mt10/dense")
    """Run directory of the dense transformer."""
    train: bool = True
    """Train both models first (False: evaluate existing runs)."""
    steps: int = 8_000
    """Gradient steps per model."""
    episodes: int = 50
    """Evaluation episodes per task."""
    sweep_episodes: int = 20
    """Evaluation episodes per task of the guidance sweep (λ ≠ 1) and the wrong-goal control."""
    guidance: tuple[float, ...] = (0.0, 1.0, 1.5, 2.0)
    """Guidance weights λ of the sweep."""
    level2_cpu_seconds: float = 300.0
    """CPU seconds each of K = 1 and K = 8 trains in the level-2 race."""
    level2_k: int = 8
    """Copies per condition of the level-2 run."""
    parts: tuple[str, ...] = ("all",)
    """Evaluations to run: all, or some of mode, dense, control, guidance_<λ> (run in parallel processes;
    each is saved under <out>_parts/ and reused by the final `all` run)."""
    level2_only: bool = False
    """Run only the level-2 race and write it to `level2_json` (it can run beside the training)."""
    level2_json: Path = RESULTS / "mt10_level2.json"
    """The level-2 race's own result; reused by the full benchmark when it exists and --no-train is given."""
    out: Path = RESULTS / "mt10.json"
    """Result JSON (plots go beside it)."""


def policy_config(dense: bool) -> PolicyConfig:
    """The benchmark's model: MoDE, or the dense transformer with MoDE's active width."""
    mode = MoDEConfig(d_model=128, n_layers=4, n_heads=4)
    if dense:
        mode.n_experts, mode.top_k, mode.expert_mult = 1, 1, mode.top_k * mode.expert_mult
    return PolicyConfig(n_obs_steps=1, horizon=16, n_action_steps=8, denoiser="mode", mode=mode)


def train_model(args: Args, run: Path, dense: bool) -> None:
    """Train one model with the benchmark's settings (the CLI equivalent is in the docstring above)."""
    train = TrainConfig(
        steps=args.steps, batch_size=128, num_threads=1, checkpoint_every=2000, val_every=1000
    )
    api.run_training(
        api.TrainJob(task=TASK, data=args.data, out=run, policy=policy_config(dense), train=train)
    )


def train_minutes(run: Path) -> float:
    """Wall-clock minutes of a run's steps, from its metrics log (steps per second of each row)."""
    rows = np.genfromtxt(run / "metrics.csv", delimiter=",", names=True)
    steps = np.diff(np.concatenate([[0], rows["step"]]))
    return float(np.sum(steps / rows["steps_per_s"]) / 60)


def parameters_and_latency(mode_run: Path, dense_run: Path) -> dict[str, Any]:
    """Parameter counts and best-of-3 median ms per chunk (batch 1, one thread, NFE 3)."""
    out: dict[str, Any] = {}
    for name, run, cache in (
        ("mode_cached", mode_run, True),
        ("mode_uncached", mode_run, False),
        ("dense", dense_run, True),
    ):
        policy = api.load_policy(run)
        policy.cfg.mode.cache_experts = cache
        policy.optimize_for_inference()
        counts = policy.denoiser.parameter_counts()
        ms = min(api.measure_latency(policy, repeats=300)["ms_per_chunk"] for _ in range(3))
        out[name] = {"ms_per_chunk": ms, "params_total": counts["total"], "params_active": counts["active"]}
    out["cache_speedup"] = out["mode_uncached"]["ms_per_chunk"] / out["mode_cached"]["ms_per_chunk"]
    return out


class GoalSwap:
    """Control policy: commands each env with the goal of the env 10 places on (same task, other goal)."""

    def __init__(self, policy: ChunkPolicy) -> None:
        self.policy = policy

    def reset(self) -> None:
        self.policy.reset()

    def select_action(self, obs: np.ndarray) -> np.ndarray:
        swapped = obs.copy()
        swapped[:, 37:] = np.roll(obs[:, 37:], 10, axis=0)
        return np.asarray(self.policy.select_action(swapped))


def hand_distance_cm(result: dict[str, Any], demos: dict[int, np.ndarray]) -> float:
    """Median distance (cm) of visited hand positions to the same task's demonstrated hand positions."""
    dists = []
    for ep in result["episodes"]:
        if "observations" not in ep:
            continue
        obs = np.asarray(ep["observations"], dtype=np.float32)
        ref = demos[int(obs[0, 36])]
        hand = obs[::5, :3]
        d2 = ((hand[:, None, :] - ref[None, :, :]) ** 2).sum(-1).min(axis=1)
        dists.append(np.sqrt(d2))
    return float(np.median(np.concatenate(dists)) * 100)


def evaluate_mt10(
    policy: Any, args: Args, demos: dict[int, np.ndarray], episodes: int | None = None, **extra: Any
) -> dict[str, Any]:
    """Episodes per task (default args.episodes); success per task and overall, and the hand distance."""
    cfg = EvalConfig(episodes=(episodes or args.episodes) * 10, seed=0, n_envs=50, keep_trajectories=True)
    result = evaluate(policy, get_task(TASK), cfg, extra=extra)
    summary = {k: result[k] for k in ("success_rate", "success_ci", "per_task", "n_episodes", "n_errors")}
    summary["hand_distance_cm"] = hand_distance_cm(result, demos)
    return {**summary, **extra}


def level2_race(args: Args) -> dict[str, Any]:
    """Validation loss against CPU seconds for K = 1 and K = K (equal denoising examples per step)."""
    task = get_task(TASK)
    episodes = api.load_episodes(task, args.data, api.DataConfig())
    cfg = policy_config(dense=False)
    train_data, val_data = api.build_datasets(task, episodes, cfg, api.DataConfig())
    assert val_data is not None
    runs: dict[int, dict[str, Any]] = {}
    for k in (1, args.level2_k):
        c = policy_config(dense=False)
        c.diffusion.train_copies = k
        policy = api.make_policy(task, c, train_data, seed=0)
        optimizer = torch.optim.AdamW(policy.parameters(), lr=3e-4, weight_decay=1e-6)
        runs[k] = {
            "policy": policy,
            "opt": optimizer,
            "rng": np.random.default_rng(0),
            "cpu": 0.0,
            "curve": [],
        }
    torch.set_num_threads(1)
    while any(r["cpu"] < args.level2_cpu_seconds for r in runs.values()):
        for k, r in runs.items():  # alternate 10 CPU-second slices, so both see the same machine
            slice_end = r["cpu"] + 10.0
            while r["cpu"] < min(slice_end, args.level2_cpu_seconds):
                t0 = time.process_time()
                batch = train_data.batch(r["rng"].integers(0, len(train_data), 128 // k))
                loss, _ = r["policy"].compute_loss(to_torch(batch))
                r["opt"].zero_grad()
                loss.backward()
                r["opt"].step()
                r["cpu"] += time.process_time() - t0
            r["curve"].append((r["cpu"], _val_k1(r["policy"], val_data)))
    out: dict[str, Any] = {"equal_examples_per_step": 128}
    for k, r in runs.items():
        out[f"k{k}"] = {"cpu_seconds": [c for c, _ in r["curve"]], "val_loss": [v for _, v in r["curve"]]}
    target = min(v for _, v in runs[1]["curve"][-3:])
    for k, r in runs.items():
        reached = [c for c, v in r["curve"] if v <= target]
        out[f"k{k}"]["cpu_seconds_to_target"] = reached[0] if reached else None
    out["target_val_loss"] = target
    return out


def _val_k1(policy: ScorePolicy, data: Any) -> float:
    """Validation loss with one copy per condition (so K does not change what is measured)."""
    k = policy.cfg.diffusion.train_copies
    policy.cfg.diffusion.train_copies = 1
    try:
        return validation_loss(policy, data, n_windows=1024)
    finally:
        policy.cfg.diffusion.train_copies = k


def hand_positions(data: Path) -> dict[int, np.ndarray]:
    """Demonstrated hand positions per task id."""
    episodes = read_replay_zarr(data)
    obs = episodes.data["obs"]
    return {j: obs[obs[:, 36] == j, :3] for j in range(10)}


def print_tables(res: dict[str, Any]) -> None:
    """Per-task table, latency table, level-2 and guidance summaries."""
    mode, dense = res["mode"], res["dense"]
    print(f"\n{'task':26s} {'expert':>7s} {'MoDE (95% CI)':>22s} {'dense (95% CI)':>22s}")
    for name, m in mode["per_task"].items():
        d, e = dense["per_task"][name], res["expert"].get(name, {}).get("success_rate", float("nan"))
        fm = f"{m['success_rate']:.0%} ({m['success_ci'][0]:.0%}-{m['success_ci'][1]:.0%})"
        fd = f"{d['success_rate']:.0%} ({d['success_ci'][0]:.0%}-{d['success_ci'][1]:.0%})"
        print(f"{name:26s} {e:7.0%} {fm:>22s} {fd:>22s}")
    print(
        f"{'mean':26s} {res['expert_mean']:7.0%} {mode['success_rate']:22.1%} {dense['success_rate']:22.1%}"
    )
    lat = res["latency"]
    for name in ("mode_cached", "mode_uncached", "dense"):
        v = lat[name]
        print(
            f"{name:14s} {v['ms_per_chunk']:.2f} ms/chunk, params {v['params_total']:,} (active {v['params_active']:,})"
        )
    print(f"MoDE expert cache speed-up: {lat['cache_speedup']:.2f}x")
    u = res["mode_uncached"]
    print(
        f"MoDE uncached: success {u['success_rate']:.1%} ({u['success_ci'][0]:.1%}-{u['success_ci'][1]:.1%}), {u['n_episodes']} episodes"
    )
    lv, k = res["level2"], res["args"]["level2_k"]
    reached = [lv[f"k{n}"]["cpu_seconds_to_target"] for n in (1, k)]
    print(
        f"level-2: target val loss {lv['target_val_loss']:.4f}; CPU s to reach it: K=1 {reached[0]}, K={k} {reached[1]}"
    )
    for g in res["guidance"]:
        print(
            f"λ={g['guidance']}: success {g['success_rate']:.1%} (goal-dependent tasks {g['goal_tasks_success']:.1%}), "
            f"hand distance to demos {g['hand_distance_cm']:.2f} cm, {g['n_episodes']} episodes"
        )
    c = res["goal_swap_control"]
    print(
        f"control (λ=1, another goal commanded): success {c['success_rate']:.1%} "
        f"(goal-dependent tasks {c['goal_tasks_success']:.1%}), hand distance {c['hand_distance_cm']:.2f} cm"
    )


def plot(res: dict[str, Any], path: Path) -> None:
    """Per-task success bars, the level-2 race and success vs λ."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(17, 4.5))
    names = list(res["mode"]["per_task"])
    x = np.arange(len(names))
    for off, key in ((-0.2, "mode"), (0.2, "dense")):
        pt = res[key]["per_task"]
        rate = np.array([pt[n]["success_rate"] for n in names])
        ci = np.array([pt[n]["success_ci"] for n in names]).T
        axes[0].bar(x + off, rate, 0.4, yerr=[rate - ci[0], ci[1] - rate], label=key, capsize=2)
    axes[0].set_xticks(x, [n.removesuffix("-v3") for n in names], rotation=60, ha="right", fontsize=7)
    axes[0].set_ylabel("success (95% Wilson)")
    axes[0].legend()
    lv = res["level2"]
    for key in [k for k in lv if k.startswith("k")]:
        axes[1].plot(lv[key]["cpu_seconds"], lv[key]["val_loss"], label=key.upper())
    axes[1].set_xlabel("CPU seconds (1 thread)")
    axes[1].set_ylabel("validation loss")
    axes[1].legend()
    g = res["guidance"]
    axes[2].errorbar(
        [r["guidance"] for r in g],
        [r["success_rate"] for r in g],
        yerr=np.array(
            [[r["success_rate"] - r["success_ci"][0], r["success_ci"][1] - r["success_rate"]] for r in g]
        ).T,
        marker="o",
        capsize=3,
    )
    axes[2].axhline(res["goal_swap_control"]["success_rate"], ls="--", c="gray", label="wrong-goal control")
    axes[2].set_xlabel("guidance λ")
    axes[2].set_ylabel("MT10 success")
    axes[2].legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def _uncached(args: Args, demos: dict[int, np.ndarray]) -> dict[str, Any]:
    """MoDE without the expert cache (same weights, same seeds): success must match the cached run."""
    policy = api.load_policy(args.mode_run)
    policy.cfg.mode.cache_experts = False
    return evaluate_mt10(
        policy.optimize_for_inference(), args, demos, args.sweep_episodes, cache_experts=False
    )


def _guided(args: Args, demos: dict[int, np.ndarray], lam: float) -> dict[str, Any]:
    return evaluate_mt10(
        api.load_policy(args.mode_run, guidance=lam), args, demos, args.sweep_episodes, guidance=lam
    )


def saved(args: Args, name: str, fn: Callable[[], dict[str, Any]]) -> dict[str, Any]:
    """An evaluation's result, computed once and kept in <out>_parts/<name>.json (delete it to redo)."""
    path = args.out.parent / f"{args.out.stem}_parts" / f"{name}.json"
    if path.exists():
        result: dict[str, Any] = read_json(path)
        return result
    result = {**fn(), "provenance": provenance("metaworld-mt10")}
    atomic_write_json(path, result)
    return result


def main(args: Args) -> dict[str, Any]:
    torch.set_num_threads(1)  # evaluations run as parallel processes on a small machine
    if not args.data.exists():
        run_generate(Generate(simulator="metaworld", out=args.data, episodes=50))
    if args.level2_only:
        race = {**level2_race(args), "provenance": provenance("metaworld-mt10")}
        atomic_write_json(args.level2_json, race)
        return race
    expert = dict(read_replay_zarr(args.data).attrs.get("expert", {}))
    if args.train:
        train_model(args, args.mode_run, dense=False)
        train_model(args, args.dense_run, dense=True)
    demos = hand_positions(args.data)
    args_json = {k: str(v) if isinstance(v, Path) else v for k, v in to_dict(args).items()}
    res: dict[str, Any] = {"args": args_json, "expert": expert}
    res["expert_mean"] = (
        float(np.mean([v["success_rate"] for v in expert.values()])) if expert else float("nan")
    )
    res["train_minutes"] = {"mode": train_minutes(args.mode_run), "dense": train_minutes(args.dense_run)}
    evaluations: dict[str, Callable[[], dict[str, Any]]] = {
        "mode": lambda: evaluate_mt10(api.load_policy(args.mode_run), args, demos, guidance=1.0, nfe=3),
        "dense": lambda: evaluate_mt10(api.load_policy(args.dense_run), args, demos, guidance=1.0, nfe=3),
        "mode_uncached": functools.partial(_uncached, args, demos),
        "control": lambda: evaluate_mt10(
            GoalSwap(api.load_policy(args.mode_run)), args, demos, args.sweep_episodes, guidance=1.0
        ),
        **{
            f"guidance_{lam}": functools.partial(_guided, args, demos, lam)
            for lam in args.guidance
            if lam != 1.0
        },
    }
    done = {
        name: saved(args, name, fn)
        for name, fn in evaluations.items()
        if name in args.parts or "all" in args.parts
    }
    if "all" not in args.parts:
        return done
    res["mode"], res["dense"], res["goal_swap_control"] = done["mode"], done["dense"], done["control"]
    res["mode_uncached"] = done["mode_uncached"]
    res["guidance"] = [res["mode"] if lam == 1.0 else done[f"guidance_{lam}"] for lam in args.guidance]
    for r in [res["mode"], res["dense"], res["goal_swap_control"], *res["guidance"]]:
        r["goal_tasks_success"] = goal_task_success(r)
    res["latency"] = parameters_and_latency(args.mode_run, args.dense_run)
    reuse = not args.train and args.level2_json.exists()
    res["level2"] = read_json(args.level2_json) if reuse else level2_race(args)
    res["provenance"] = provenance("metaworld-mt10")
    res["parts_provenance"] = {
        name: part.get("provenance") for name, part in done.items()
    }  # parts are reused
    atomic_write_json(args.out, res)
    plot(res, args.out.with_suffix(".png"))
    print_tables(res)
    return res


if __name__ == "__main__":
    main(tyro.cli(Args))

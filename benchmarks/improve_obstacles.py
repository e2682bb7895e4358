"""RL on the multimodal obstacle task (issue 12): success and behaviour entropy before and after.

Does RL collapse the modes? The base is the `make demo` recipe (1,000 scripted demonstrations over 24
routes, 8,000 steps), sampled with DDIM at NFE 3: deterministic given the initial noise, as DSRL needs,
and weaker than the demo's Euler-ancestral NFE 20, which leaves room to improve. `scorepolicy improve`
then trains DSRL and residual RL on the sparse `success` reward, with the same sampler, NFE and budget
rules. Every policy is tested on the same held-out seeds (default 480 episodes from seed 10000, like the
diversity benchmark): success with its Wilson 95% interval, behaviour entropy over the routes of the
successful rollouts (log base 24), routes covered, KL to the demonstrator's uniform route distribution,
and Barnard's exact test against the base. `scorepolicy compare` runs on the three result JSONs (its
report goes to benchmarks/results/improve_obstacles_report/). Writes
benchmarks/results/improve_obstacles.json (with provenance) and improve_obstacles.png (success and
entropy before/after, route histograms, validation curves).

    python benchmarks/improve_obstacles.py                      # base (if missing), both methods, tests
    python benchmarks/improve_obstacles.py --no-train           # re-test the runs already in --work
"""

from __future__ import annotations

import csv
import dataclasses
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import tyro

from scorepolicy import api
from scorepolicy.commands.compare import Compare, run_compare
from scorepolicy.envs.obstacles import LAYOUT
from scorepolicy.evaluation import EvalConfig
from scorepolicy.evaluation.diversity import behaviour_kl, successful_labels
from scorepolicy.evaluation.stats import barnard_pvalue
from scorepolicy.files import atomic_write_json, read_json
from scorepolicy.provenance import provenance
from scorepolicy.rl.dsrl_config import DSRLConfig
from scorepolicy.rl.residual import ResidualConfig

RESULTS = Path(__file__).parent / "results"
TEST_KEYS = (
    "success_rate",
    "success_ci",
    "behaviour_entropy",
    "n_behaviours_seen",
    "behaviour_counts",
    "n_episodes",
    "seeds",
    "sampler",
    "nfe",
    "n_errors",
)


@dataclass
class Args:
    """Obstacle-task RL benchmark options."""

    work: Path = Path("runs/improve_obstacles")
    """Working directory: base/ (the demo-recipe run), dsrl/ and residual/ (improved runs), evals/."""
    n_demos: int = 1000
    """Expert demonstrations of the base (the demo's recipe)."""
    base_steps: int = 8000
    """Training steps of the base (the demo's recipe)."""
    sampler: str = "ddim"
    """Sampler of the base in RL and in the tests (DSRL needs a deterministic one)."""
    nfe: int = 3
    """Denoiser calls per chunk, in RL and in the tests."""
    variants: tuple[str, ...] = (
        "dsrl:dsrl",
        "residual:residual",
        "dsrl-fast:dsrl:actor_lr=3e-4,critic_warmup=100,learning_starts=128,utd=0.5,minutes=12",
        "residual-fast:residual:actor_lr=1e-4,learning_starts=1000,critic_warmup=200,minutes=12",
    )
    """Improvements, each NAME:METHOD[:FIELD=VALUE,...] (run directory --work/NAME; FIELDs of the method's
    config, `minutes` for its wall-clock budget). 'dsrl' and 'residual' are `scorepolicy improve`'s
    defaults, tuned on Push-T not to fall below the base: their actor learning rate (1e-6) and critic
    warm-ups (16 k env steps) leave the actor where it started in a short run; the 'fast' ones move it."""
    env_steps: int = 1_000_000
    """Env-step budget of each method (the wall-clock budget --minutes usually ends a run first)."""
    minutes: float = 15.0
    """Wall-clock budget of each method's training."""
    eval_every: int = 20_000
    """Env steps between validation curve points."""
    eval_episodes: int = 100
    """Validation episodes per curve point (seeds from --eval-seed)."""
    eval_seed: int = 0
    """First validation seed (the training seeds start at 1,000,000; the test seeds at --test-seed)."""
    n_envs: int = 8
    """Training envs per wave."""
    test_episodes: int = 200
    """Held-out test episodes per policy."""
    test_seed: int = 10000
    """First held-out test seed."""
    dsrl: DSRLConfig = field(default_factory=DSRLConfig)
    """DSRL settings (defaults: `scorepolicy improve`'s)."""
    residual: ResidualConfig = field(default_factory=ResidualConfig)
    """Residual RL settings (defaults: `scorepolicy improve`'s)."""
    train: bool = True
    """Train the base (if missing) and the improvements first; --no-train re-tests the runs in --work."""
    reuse_tests: bool = True
    """Reuse a test result already in --work/evals (same run, seeds and episodes) instead of re-running it."""
    resume: bool = False
    """Resume interrupted improvement runs in --work."""
    name: str = "improve_obstacles"
    """Stem of the result files in benchmarks/results."""


def ensure_base(args: Args) -> dict[str, Any]:
    """The base run (the demo's recipe; trained unless it exists): its demo.json summary (when the demo
    finished) and the training steps it has (a run stopped early by SIGTERM keeps its checkpoint)."""
    base = args.work / "base"
    if not (base / "model.safetensors").is_file():
        if not args.train:
            raise FileNotFoundError(f"{base}: no base run (run without --no-train first)")
        api.run_demo(api.DemoConfig(out=base, n_demos=args.n_demos, steps=args.base_steps))
    meta = read_json(base / "train_config.json")
    summary = {
        "scheduled_steps": meta["train"]["steps"],
        "trained_steps": trained_steps(base),
        "n_demos": meta["dataset"]["n_demos"],
    }
    if (base / "demo.json").is_file():
        summary["demo"] = read_json(base / "demo.json")
    return summary


def trained_steps(run: Path) -> int | None:
    """The step of a run's last checkpoint (train_state.safetensors metadata), None if unknown."""
    import json

    from safetensors import safe_open

    path = run / "train_state.safetensors"
    if not path.is_file():
        return None
    with safe_open(str(path), "pt") as f:
        meta = f.metadata() or {}
    return int(json.loads(meta.get("train_state", "{}")).get("step", 0)) or None


def parse_variant(variant: str) -> tuple[str, str, dict[str, str]]:
    """'dsrl-fast:dsrl:actor_lr=3e-4,utd=0.5' → ('dsrl-fast', 'dsrl', {'actor_lr': '3e-4', 'utd': '0.5'})."""
    name, method, *rest = variant.split(":")
    fields = dict(item.split("=", 1) for item in ",".join(rest).split(",") if item)
    return name, method, fields


def method_configs(args: Args, method: str, fields: dict[str, str]) -> tuple[DSRLConfig, ResidualConfig]:
    """The DSRL and residual settings of a variant (its FIELD=VALUE on the method's config)."""
    dsrl, residual = dataclasses.replace(args.dsrl), dataclasses.replace(args.residual)
    cfg: Any = dsrl if method == "dsrl" else residual
    for key, value in fields.items():
        if key != "minutes":
            setattr(
                cfg, key, type(getattr(cfg, key))(float(value) if "." in value or "e" in value else value)
            )
    return dsrl, residual


def improve_variant(args: Args, variant: str) -> dict[str, Any]:
    """Improve the base with one variant (or, with --no-train, read the run back): run dir, curve, minutes."""
    name, method, fields = parse_variant(variant)
    out = args.work / name
    if args.resume or (args.train and not (out / "model.safetensors").is_file()):
        dsrl, residual = method_configs(args, method, fields)
        job = api.ImproveJob(
            run=args.work / "base",
            method=method,  # type: ignore[arg-type]
            env_steps=args.env_steps,
            out=out,
            resume=args.resume,
            eval_every=args.eval_every,
            eval_episodes=args.eval_episodes,
            eval_seed=args.eval_seed,
            n_envs=args.n_envs,
            reward="success",
            nfe=args.nfe,
            sampler=args.sampler,  # type: ignore[arg-type]
            max_minutes=float(fields.get("minutes", args.minutes)),
            progress=False,
            dsrl=dsrl,
            residual=residual,
        )
        api.improve(job)
    if not (out / "model.safetensors").is_file():
        raise FileNotFoundError(f"{out}: no improved run")
    with open(out / "curve.csv", newline="") as f:
        curve = list(csv.DictReader(f))
    state = out / "rl_state" / "state.json"
    cfg = read_json(out / "improve_config.json")
    return {
        "run": str(out),
        "method": method,
        "settings": cfg[method],
        "curve": curve,
        "env_steps": int(float(curve[-1]["env_step"])),
        "wall_minutes": float(curve[-1]["wall_time_s"]) / 60,
        "checkpoint_env_steps": read_json(state).get("progress", {}).get("env_steps")
        if state.is_file()
        else None,
        "improve_config": cfg,
    }


def test_policy(args: Args, name: str, run: Path) -> tuple[dict[str, Any], Path]:
    """One policy on the held-out seeds; its row and the result JSON (for `compare`)."""
    path = args.work / "evals" / f"{name}.json"
    if args.reuse_tests and path.is_file():
        result = read_json(path)
        if result.get("run") == str(run) and result.get("seeds") == [
            args.test_seed,
            args.test_seed + args.test_episodes - 1,
        ]:
            return test_row(result, None), path
    path.unlink(missing_ok=True)
    cfg = EvalConfig(
        episodes=args.test_episodes,
        seed=args.test_seed,
        n_envs=60,
        keep_trajectories=True,
        json_path=path,
        progress=False,
    )
    t0 = time.perf_counter()
    sampler = args.sampler if name == "base" else None  # an improved run keeps its improve-time sampler
    result = api.evaluate_run(run, cfg, nfe=args.nfe, sampler=sampler)
    return test_row(result, time.perf_counter() - t0), path


def test_row(result: dict[str, Any], seconds: float | None) -> dict[str, Any]:
    """The reported numbers of one test result (routes of the successful episodes, KL to the demos)."""
    routes = successful_labels(result["episodes"], "route")
    uniform = np.full(LAYOUT.n_routes, 1.0 / LAYOUT.n_routes)
    row = {k: result.get(k) for k in TEST_KEYS}
    row["successes"] = sum(int(bool(e.get("success"))) for e in result["episodes"] if "error" not in e)
    row["collisions"] = sum(int(bool(e.get("collided"))) for e in result["episodes"])
    row["kl_to_demonstrations"] = behaviour_kl(routes, uniform, LAYOUT.n_routes)
    row["test_seconds"] = None if seconds is None else round(seconds, 1)
    return row


def protocol(args: Args, base: dict[str, Any], methods: dict[str, Any]) -> str:
    """The protocol in words, computed from the settings and from what each run recorded."""
    steps = base["trained_steps"]
    stopped = "" if steps == base["scheduled_steps"] else f", stopped at step {steps} of them"
    parts = [
        f"base: the demo recipe ({base['n_demos']} demonstrations, {base['scheduled_steps']} steps{stopped}), "
        f"sampled with {args.sampler} at NFE {args.nfe}",
        f"test: {args.test_episodes} episodes from seed {args.test_seed}, same seeds for every policy",
    ]
    for name, info in methods.items():
        if "run" not in info:
            continue
        cfg = info["improve_config"]
        parts.append(
            f"{name}: reward '{cfg['reward']}', {info['env_steps']} env steps in {info['wall_minutes']:.1f} min "
            f"(budget {cfg['env_steps']} env steps, {cfg['max_minutes']} min; {cfg['n_envs']} training envs from "
            f"seed {cfg['train_seed']}); curve on {cfg['eval_episodes']} validation episodes from seed "
            f"{cfg['eval_seed']} every {cfg['eval_every']} env steps"
        )
    return "; ".join(parts)


def main(args: Args) -> dict[str, Any]:
    """Run the benchmark; returns (and writes) the result dict."""
    base_summary = ensure_base(args)
    methods: dict[str, Any] = {}
    for variant in args.variants:
        name = parse_variant(variant)[0]
        try:
            methods[name] = improve_variant(args, variant)
        except Exception as e:  # a failing or missing method is reported, not fatal
            methods[name] = {"skipped": f"{type(e).__name__}: {e}"}
            print(f"{name}: skipped ({e})")
    runs = {"base": args.work / "base", **{m: Path(i["run"]) for m, i in methods.items() if "run" in i}}
    tests, paths = {}, []
    for name, run in runs.items():
        tests[name], path = test_policy(args, name, run)
        paths.append(path)
    base = tests["base"]
    for name, row in tests.items():
        if name != "base":
            row["barnard_p_vs_base"] = barnard_pvalue(
                row["successes"], row["n_episodes"], base["successes"], base["n_episodes"]
            )
    report = RESULTS / f"{args.name}_report"
    compare_text = run_compare(Compare(results=paths, report=report, names=list(runs), overwrite=True))
    letters = read_json(report / "comparison.json")["comparisons"][0]
    for row in letters["rows"]:
        tests[row["name"]]["letters"] = row["letters"]
    summary = {
        "settings": {k: str(v) if isinstance(v, Path) else v for k, v in dataclasses.asdict(args).items()},
        "base": {"run": str(args.work / "base"), **base_summary},
        "methods": methods,
        "test": tests,
        "compare": compare_text,
        "protocol": protocol(args, base_summary, methods),
        "provenance": provenance("obstacles"),
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    atomic_write_json(RESULTS / f"{args.name}.json", summary)
    plot(summary, RESULTS / f"{args.name}.png")
    print(table(tests, methods))
    print(compare_text)
    return summary


def table(tests: dict[str, Any], methods: dict[str, Any]) -> str:
    """The result table as text."""
    head = (
        f"{'policy':15} {'success':>8} {'95% Wilson':>13} {'entropy':>8} {'routes':>7} {'KL':>6} "
        f"{'p vs base':>10} {'env steps':>10} {'minutes':>8}"
    )
    lines = [head]
    for name, row in tests.items():
        lo, hi = row["success_ci"]
        ent = row.get("behaviour_entropy")
        p = f"{row['barnard_p_vs_base']:.3g}" if "barnard_p_vs_base" in row else "-"
        info = methods.get(name, {})
        steps = str(info.get("env_steps", "-"))
        minutes = f"{info['wall_minutes']:.1f}" if "wall_minutes" in info else "-"
        lines.append(
            f"{name:15} {row['success_rate']:8.3f} {f'[{lo:.3f}, {hi:.3f}]':>13} "
            f"{'-' if ent is None else f'{ent:.3f}':>8} {row['n_behaviours_seen']:>7} "
            f"{row['kl_to_demonstrations']:6.3f} {p:>10} {steps:>10} {minutes:>8}"
        )
    return "\n".join(lines)


def plot(summary: dict[str, Any], path: Path) -> None:
    """Success (Wilson bars) and entropy before/after, route histograms, validation curves."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    tests = summary["test"]
    names = list(tests)
    fig, axes = plt.subplots(2, 2, figsize=(12, 8))
    ax = axes[0, 0]
    rate = np.array([tests[n]["success_rate"] for n in names])
    ci = np.array([tests[n]["success_ci"] for n in names])
    ax.bar(names, rate, yerr=[rate - ci[:, 0], ci[:, 1] - rate], capsize=4, color="C0")
    ax.set(ylabel="success (test seeds, 95% Wilson)", ylim=(0, 1), title="success")
    ax = axes[0, 1]
    entropy = [tests[n]["behaviour_entropy"] or 0.0 for n in names]
    ax.bar(names, entropy, color="C2")
    for i, n in enumerate(names):
        ax.text(i, entropy[i] + 0.01, f"{tests[n]['n_behaviours_seen']}/24 routes", ha="center")
    ax.set(ylabel="behaviour entropy (log base 24)", ylim=(0, 1.1), title="route entropy of successes")
    ax = axes[1, 0]
    width = 0.8 / len(names)
    for i, n in enumerate(names):
        counts = np.asarray(tests[n]["behaviour_counts"], dtype=float)
        share = counts / max(counts.sum(), 1.0)
        ax.bar(np.arange(LAYOUT.n_routes) + (i - (len(names) - 1) / 2) * width, share, width, label=n)
    ax.axhline(1 / LAYOUT.n_routes, color="k", lw=0.8, ls="--", label="demonstrations (uniform)")
    ax.set(xlabel="route", ylabel="share of successful episodes", title="route histograms")
    ax.legend(fontsize=8)
    ax = axes[1, 1]
    for method, info in summary["methods"].items():
        rows = info.get("curve") or []
        if rows:
            x = [int(float(r["env_step"])) for r in rows]
            color = f"C{names.index(method)}" if method in names else None  # as in the histograms
            ax.plot(x, [float(r["success_rate"]) for r in rows], marker="o", label=method, color=color)
            lo, hi = [float(r["success_lo"]) for r in rows], [float(r["success_hi"]) for r in rows]
            ax.fill_between(x, lo, hi, alpha=0.2, color=color)
    ax.set(xlabel="env steps", ylabel="success (validation seeds, 95% Wilson)", ylim=(0, 1), title="curves")
    ax.legend()
    for a in axes.flat:
        a.grid(alpha=0.3)
    fig.suptitle("RL on the obstacle task: success and route diversity before/after")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


if __name__ == "__main__":
    main(tyro.cli(Args))

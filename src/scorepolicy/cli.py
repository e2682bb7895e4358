"""`scorepolicy` command line: argument parsing and printing only; the work is in scorepolicy.api."""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Literal

import tyro

from scorepolicy import api
from scorepolicy.api.jobs import check_resume_flags, recipe_job, saved_job
from scorepolicy.commands.compare import Compare, PlanSize, format_per_task, run_compare, run_plan
from scorepolicy.commands.data import DataCommand, run_data_command
from scorepolicy.commands.distill import Distill, run_distill
from scorepolicy.commands.export import Export, run_export
from scorepolicy.commands.guard import GuardBench, GuardCalibrate, GuardCommand, run_guard_command
from scorepolicy.commands.outputs import check_output_dir, check_output_file
from scorepolicy.commands.serve import Serve, run_serve
from scorepolicy.core.task import Condition
from scorepolicy.devices import DeviceName
from scorepolicy.diffusion.samplers import SamplerName
from scorepolicy.envs.conditions import check_condition_flags
from scorepolicy.errors import ScorePolicyError, check_field
from scorepolicy.evaluation import EvalConfig, format_result
from scorepolicy.files import atomic_write_json
from scorepolicy.provenance import provenance
from scorepolicy.training.distributed import env_ranks


@dataclass
class Eval:
    """Evaluate a trained run in its simulator: success with a 95% interval, task metrics, videos, JSON."""

    run: tyro.conf.Positional[Path]
    """Run directory written by `scorepolicy train`, or a .onnx graph written by `scorepolicy export`."""
    episodes: int = 50
    """Episodes to roll out (per task for multi-task suites); env seeds are seed .. seed+episodes-1."""
    seed: int | None = None
    """First env seed (default: the task's, 100000 for Push-T)."""
    nfe: int | None = None
    """Denoiser evaluations per chunk (default: the run's config)."""
    sampler: SamplerName | None = None
    """Sampler override (default: the run's config)."""
    sample_sigma_max: float | None = None
    """Noise level sampling starts from (default: the run's config)."""
    guidance: float | None = None
    """Classifier-free guidance λ for goal-conditioned policies: 0 goal-free, 1 conditional, >1 extrapolates."""
    json: Path | None = None
    """Write the result JSON here."""
    video_dir: Path | None = None
    """Write videos of the first --n-videos episodes here."""
    n_videos: int = 4
    """Videos to record when --video-dir is set."""
    n_envs: int = 50
    """Environments stepped together (the policy's batch)."""
    vector: Literal["sync", "async"] = "sync"
    """Deprecated and ignored: envs are stepped in this process, or in --env-workers processes."""
    plot: Path | None = None
    """Obstacle task: save a PNG of all rollouts over the obstacle field."""
    trajectories: bool = False
    """Keep every episode's observations in the JSON (for the trajectory plots of `compare`)."""
    env_workers: int = 1
    """Processes stepping each wave's envs (e.g. 2 on 2 cores; the policy stays batched); same results."""
    step_timeout: float = 120.0
    """Seconds an env may take per creation, reset or step in an env worker (--env-workers ≥ 2) before
    the worker is killed and that episode recorded as an error."""
    backend: Literal["local", "ray"] = "local"
    """Run rollouts in this process or as Ray tasks (pip install 'scorepolicy[ray]'); same results."""
    workers: int = 2
    """Ray workers (one CPU each) with --backend ray."""
    address: str | None = None
    """Existing Ray cluster to join (default: start a local Ray on demand)."""
    resume: bool = False
    """Continue an interrupted evaluation from the episodes already journalled beside --json."""
    latency: bool = True
    """Also time one action chunk at batch 1 (median ms, stored as latency_ms)."""
    threads: int = 1
    """torch threads: one by default, which keeps its speed beside other busy processes on a small machine."""
    overwrite: bool = False
    """Replace existing --json / --plot files and videos in --video-dir (never the run's own files)."""
    condition: str = "nominal"
    """Perturb the envs (Push-T and obstacle task): nominal, obs-noise, block-shift or unseen-start;
    recorded in the JSON's `condition`."""
    condition_scale: float | None = None
    """Strength of --condition in the env's units (Push-T pixels, obstacle field units); default: the task's."""
    condition_step: int | None = None
    """block-shift: the env step after which the block (or agent) is displaced; default: the task's."""
    monitor: Path | None = None
    """Run guarded by this calibrated monitor (`scorepolicy guard calibrate`): records `alarm` and
    `first_alarm_step` per episode and the alarm rates on successes and failures (with intervals)."""
    device: DeviceName = "auto"
    """Where the policy runs: auto = CUDA when torch sees a device, else the CPU (envs step on the CPU)."""
    subtask: str | None = None
    """Multi-task suites: evaluate one task only, e.g. peg-insert-side (default: an improved run's own)."""

    def __post_init__(self) -> None:
        check_condition_flags(self.condition, self.condition_scale, self.condition_step)
        for flag, value in (
            ("--episodes", self.episodes),
            ("--n-envs", self.n_envs),
            ("--threads", self.threads),
        ):
            check_field(flag, value, at_least=1)
        check_field("--nfe", self.nfe, at_least=1)
        check_field("--n-videos", self.n_videos, at_least=0)
        check_field("--env-workers", self.env_workers, at_least=1)
        check_field("--workers", self.workers, at_least=1)
        check_field("--sample-sigma-max", self.sample_sigma_max, above=0)
        check_field("--guidance", self.guidance, at_least=0)


@dataclass
class Latency:
    """Median milliseconds per action chunk (batch 1 by default) on --device (the CPU here by default)."""

    run: tyro.conf.Positional[Path]
    """Run directory written by `scorepolicy train`, or a .onnx graph written by `scorepolicy export`."""
    nfe: int | None = None
    """Denoiser evaluations per chunk (default: the run's config)."""
    sampler: SamplerName | None = None
    """Sampler override."""
    threads: int = 1
    """torch threads."""
    batch: int = 1
    """Observations per call."""
    repeats: int = 300
    """Timed calls."""
    json: Path | None = None
    """Write the result JSON here."""
    overwrite: bool = False
    """Replace an existing --json file (never the run's own files)."""
    device: DeviceName = "auto"
    """Where the policy runs: auto = CUDA when torch sees a device, else the CPU."""

    def __post_init__(self) -> None:
        for flag, value in (
            ("--threads", self.threads),
            ("--batch", self.batch),
            ("--repeats", self.repeats),
        ):
            check_field(flag, value, at_least=1)
        check_field("--nfe", self.nfe, at_least=1)


@dataclass
class Select:
    """Pick the best kept snapshot of a run by rollouts on validation seeds; install it as RUN/best.

    Checkpoints of one run differ by several points of success; this chooses among them on seeds kept
    apart from the ones results are reported on (then: scorepolicy eval RUN/best).
    """

    run: tyro.conf.Positional[Path]
    """Run directory written by `scorepolicy train` (its checkpoints/step_* snapshots are the candidates)."""
    episodes: int = 100
    """Validation episodes per snapshot (per task for multi-task suites)."""
    seed: int = 0
    """First validation seed; keep these apart from the reported seeds (Push-T reports 100000..)."""
    nfe: int | None = None
    """Denoiser evaluations per chunk (default: the run's config)."""
    metric: Literal["auto", "mean_score", "success_rate"] = "auto"
    """What to maximise: auto is the task's mean score where it has one (Push-T), else success."""
    n_envs: int = 50
    """Environments stepped together (the policy's batch)."""
    env_workers: int = 1
    """Processes stepping each wave's envs; same results."""
    threads: int = 1
    """torch threads (one by default: it keeps its speed beside other busy processes)."""

    def __post_init__(self) -> None:
        for flag, value in (
            ("--episodes", self.episodes),
            ("--n-envs", self.n_envs),
            ("--threads", self.threads),
        ):
            check_field(flag, value, at_least=1)
        check_field("--nfe", self.nfe, at_least=1)
        check_field("--env-workers", self.env_workers, at_least=1)


Command = (
    Annotated[api.DemoConfig, tyro.conf.subcommand("demo")]
    | Annotated[
        api.TrainJob, tyro.conf.subcommand("train", description="Train a score policy on demonstrations.")
    ]
    | Annotated[Eval, tyro.conf.subcommand("eval")]
    | Annotated[api.ImproveJob, tyro.conf.subcommand("improve")]
    | Annotated[Latency, tyro.conf.subcommand("latency")]
    | Annotated[Select, tyro.conf.subcommand("select")]
    | Annotated[DataCommand, tyro.conf.subcommand("data", description="Inspect, validate, convert datasets.")]
    | Annotated[Compare, tyro.conf.subcommand("compare")]
    | Annotated[PlanSize, tyro.conf.subcommand("plan")]
    | Annotated[Serve, tyro.conf.subcommand("serve")]
    | Annotated[Export, tyro.conf.subcommand("export")]
    | Annotated[Distill, tyro.conf.subcommand("distill")]
    | Annotated[
        GuardCommand, tyro.conf.subcommand("guard", description="Run-time failure prediction (FIPER).")
    ]
)


def do_train(job: api.TrainJob) -> None:
    result = api.run_training(job)
    if env_ranks().is_main:  # under torchrun, every rank returns here
        print(
            f"trained {result.steps} steps in {result.seconds / 60:.1f} min; run directory: {result.run_dir}"
        )


def do_eval(args: Eval) -> None:
    check_output_file(args.json, "--json", overwrite=args.overwrite)
    check_output_file(args.plot, "--plot", overwrite=args.overwrite)
    check_output_dir(args.video_dir, "--video-dir", overwrite=args.overwrite, pattern="episode_*.mp4")
    cfg = EvalConfig(
        episodes=args.episodes,
        seed=args.seed,
        n_envs=args.n_envs,
        video_dir=args.video_dir,
        n_videos=args.n_videos if args.video_dir else 0,
        json_path=args.json,
        keep_trajectories=args.plot is not None or args.trajectories,
        env_workers=args.env_workers,
        step_timeout=args.step_timeout,
        backend=args.backend,
        workers=args.workers,
        address=args.address,
        resume=args.resume,
    )
    with api.torch_threads(args.threads):
        result = api.evaluate_run(
            args.run,
            cfg,
            nfe=args.nfe,
            sampler=args.sampler,
            sample_sigma_max=args.sample_sigma_max,
            guidance=args.guidance,
            latency=args.latency,
            condition=Condition(args.condition, args.condition_scale, args.condition_step),
            monitor=args.monitor,
            device=args.device,
            subtask=args.subtask,
        )
    print(format_result(result))
    if result.get("per_task"):
        print(format_per_task(result))
    if args.plot is not None:
        api.plot_rollouts(result, args.plot)
        print(f"rollout plot: {args.plot}")


def do_improve(job: api.ImproveJob) -> None:
    result = api.improve(job)
    for row in result["curve"]:
        score = f", score {float(row['mean_score']):.3f}" if row.get("mean_score") else ""
        print(f"env step {int(row['env_step'])}: success {float(row['success_rate']):.3f}{score}")
    print(f"improved policy: {result['run_dir']} (evaluate it with scorepolicy eval {result['run_dir']})")


def do_latency(args: Latency) -> None:
    check_output_file(args.json, "--json", overwrite=args.overwrite)
    policy = api.load_inference_policy(args.run, args.nfe, args.sampler, device=args.device)
    result = api.measure_latency(policy, batch=args.batch, threads=args.threads, repeats=args.repeats)
    print(
        f"{result['denoiser']} denoiser, NFE {result['nfe']} ({result['sampler']}), batch {result['batch']}, "
        f"{result['threads']} thread(s), {result['path']} on {result['device']}: {result['ms_per_chunk']:.3f} ms per chunk "
        f"(median; p90 {result['ms_p90']:.3f})"
    )
    if result["deprecated_apis"]:
        print(
            f"note: this path uses {', '.join(result['deprecated_apis'])}, deprecated in torch {result['torch_version']}"
        )
    if args.json is not None:
        prov = provenance(api.recorded_task(args.run))
        atomic_write_json(args.json, {"run": str(args.run), **result, "provenance": prov})


def do_select(args: Select) -> None:
    cfg = EvalConfig(episodes=args.episodes, seed=args.seed, n_envs=args.n_envs, env_workers=args.env_workers)
    metric = None if args.metric == "auto" else args.metric
    with api.torch_threads(args.threads):
        summary = api.select_snapshot(args.run, cfg, nfe=args.nfe, metric=metric)
    for row in summary["snapshots"]:
        if "skipped" in row:
            print(f"{row['snapshot']}: skipped ({row['skipped']})")
            continue
        score = f"score {row['mean_score']:.3f}, " if "mean_score" in row else ""
        mark = "  <- best" if row["snapshot"] == summary["best"] else ""
        print(f"{row['snapshot']}: {score}success {row['success_rate']:.2f}{mark}")
    print(f"installed {summary['best']} as {args.run / 'best'}; table in {args.run / 'selection.json'}")


def do_demo(args: api.DemoConfig) -> None:
    print(json.dumps(api.run_demo(args), indent=2))


SHORTHANDS = {
    "--policy": "--policy.kind",
    "--denoiser": "--policy.denoiser",
    "--threads": "--train.num-threads",
    "--device": "--train.device",
    "--ranks": "--train.ranks",
}
"""`scorepolicy train` shorthands: `--policy mse-bc`, `--denoiser mode`, `--threads 2`, `--device cuda`,
`--ranks 2`."""
TRAIN_DESCRIPTION = (
    "Train a score policy on demonstrations. With --task, the task's recipe gives the defaults (shown by "
    "`scorepolicy train --task NAME --help`). `--out RUN --resume` alone continues RUN with its saved settings; "
    "only --train.steps, logging, checkpoint cadence, progress, --threads, --device and --ranks may change on "
    "resume. --ranks N trains with N data-parallel processes (global batch unchanged); "
    "`torchrun --nproc-per-node N -m scorepolicy train ...` does the same across machines."
)


def expand_shorthands(argv: list[str]) -> list[str]:
    """Rewrite the SHORTHANDS flags (as `--flag VALUE` or `--flag=VALUE`) to their full names."""
    out: list[str] = []
    for i, arg in enumerate(argv):
        prev = argv[i - 1] if i else ""
        flag, eq, value = arg.partition("=")
        if prev in SHORTHANDS and not arg.startswith("--"):
            out[-1] = SHORTHANDS[prev]
        elif eq and flag in SHORTHANDS:
            arg = f"{SHORTHANDS[flag]}={value}"
        out.append(arg)
    return out


def flag_value(argv: list[str], flag: str) -> str | None:
    """The value of `flag` in argv (`--flag VALUE` or `--flag=VALUE`; the last one wins), None if absent."""
    value = None
    for i, arg in enumerate(argv):
        if arg == flag and i + 1 < len(argv):
            value = argv[i + 1]
        elif arg.startswith(flag + "="):
            value = arg.partition("=")[2]
    return value


def parse_train(argv: list[str]) -> api.TrainJob:
    """`scorepolicy train` arguments over the right defaults: the run's saved settings with --resume (flags
    that would break the exact continuation refused), else the --task recipe; every field validated."""
    argv = expand_shorthands(argv)
    resume = "--resume" in argv
    out = Path(flag_value(argv, "--out") or api.TrainJob().out)
    default = saved_job(out) if resume else recipe_job(flag_value(argv, "--task"))
    job = tyro.cli(
        api.TrainJob, args=argv, default=default, prog="scorepolicy train", description=TRAIN_DESCRIPTION
    )
    job.validate()
    if resume:
        check_resume_flags(job, default)
    return job


def main(argv: list[str] | None = None) -> int:
    """Entry point of the `scorepolicy` command."""
    args = sys.argv[1:] if argv is None else argv
    try:
        if args[:1] == ["train"]:
            do_train(parse_train(args[1:]))
            return 0
        command = tyro.cli(Command, args=args, prog="scorepolicy")  # fields are validated while parsing
        if isinstance(command, api.DemoConfig):
            do_demo(command)
        elif isinstance(command, api.TrainJob):
            do_train(command)
        elif isinstance(command, Eval):
            do_eval(command)
        elif isinstance(command, api.ImproveJob):
            do_improve(command)
        elif isinstance(command, Latency):
            do_latency(command)
        elif isinstance(command, Select):
            do_select(command)
        elif isinstance(command, Compare):
            print(run_compare(command))
        elif isinstance(command, PlanSize):
            print(run_plan(command))
        elif isinstance(command, Serve):
            run_serve(command)
        elif isinstance(command, Export):
            print(run_export(command))
        elif isinstance(command, Distill):
            print(run_distill(command))
        elif isinstance(command, (GuardCalibrate, GuardBench)):
            return run_guard_command(command)
        else:
            return run_data_command(command)
    except ScorePolicyError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt as e:
        print(f"interrupted{f': {e}' if str(e) else ''}", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())

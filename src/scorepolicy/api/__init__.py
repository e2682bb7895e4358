"""The Python API behind the CLI, one module per concern (each re-exported here: `from scorepolicy import api`).

- `training`: TrainJob / DataConfig and the pipeline (load data, build datasets, make the policy, train)
- `runs`: a trained run's task, its policy loaded for inference (or an exported .onnx graph), installing a snapshot
- `evaluation`: evaluate a run in its simulator, time its chunks, plot obstacle rollouts
- `select`: evaluate a run's kept snapshots on validation seeds and install the best as RUN/best
- `offline_eval`: action-prediction error on held-out episodes (data without a simulator)
- `demo`: the bundled obstacle-task demo
- `improvement`: RL improvement of a trained run (DSRL, residual RL)
- `distill`: few-step students of a trained run by consistency distillation
"""

from scorepolicy.api.demo import DemoConfig, run_demo
from scorepolicy.api.distill import distill_run
from scorepolicy.api.evaluation import evaluate_run, measure_latency, plot_rollouts, torch_threads
from scorepolicy.api.improvement import ImproveJob, improve, improve_checks
from scorepolicy.api.runs import (
    install_snapshot,
    load_inference_policy,
    load_policy,
    recorded_task,
    run_task_name,
)
from scorepolicy.api.select import SELECTION_KEYS, evaluate_snapshots, select_snapshot
from scorepolicy.api.training import (
    DEFAULT_PUSHT_ZARR,
    DataConfig,
    TrainJob,
    build_datasets,
    load_episodes,
    load_task_data,
    make_policy,
    run_training,
)

__all__ = [
    "DEFAULT_PUSHT_ZARR",
    "SELECTION_KEYS",
    "DataConfig",
    "DemoConfig",
    "ImproveJob",
    "TrainJob",
    "build_datasets",
    "distill_run",
    "evaluate_run",
    "evaluate_snapshots",
    "improve",
    "improve_checks",
    "install_snapshot",
    "load_episodes",
    "load_inference_policy",
    "load_policy",
    "load_task_data",
    "make_policy",
    "measure_latency",
    "plot_rollouts",
    "recorded_task",
    "run_demo",
    "run_task_name",
    "run_training",
    "select_snapshot",
    "torch_threads",
]

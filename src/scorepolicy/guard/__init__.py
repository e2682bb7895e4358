"""Run-time failure prediction for score policies (FIPER): observation novelty (RND on the policy's own
observation embedding) and action-chunk entropy, conformal calibration on successful rollouts, and a
guarded policy that raises alarms.

- `scores`: the RND networks, the binned entropy of B sampled chunks, the batched B-sample call
- `monitor`: windowed scores, conformal thresholds, the alarm rule, save/load (`Monitor`)
- `calibrate`: calibration rollouts → `Monitor`
- `guarded`: `GuardedPolicy(policy, monitor)` → `action, alarm = guarded.select_action(obs)`
- `metrics`: TPR, TNR, accuracy, detection time, TWA on per-episode alarm records, with intervals
- `summary`: alarm rates of a guarded evaluation
"""

from scorepolicy.guard.calibrate import CALIBRATION_SEED, GuardSettings, calibrate
from scorepolicy.guard.guarded import Alarm, GuardedPolicy
from scorepolicy.guard.monitor import Monitor, conformal_threshold, policy_sha256
from scorepolicy.guard.scores import RND, RNDConfig, chunk_entropy, sample_chunks

__all__ = [
    "CALIBRATION_SEED",
    "RND",
    "Alarm",
    "GuardSettings",
    "GuardedPolicy",
    "Monitor",
    "RNDConfig",
    "calibrate",
    "chunk_entropy",
    "conformal_threshold",
    "policy_sha256",
    "sample_chunks",
]

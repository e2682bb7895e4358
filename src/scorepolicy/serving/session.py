"""One client's session: its own copy of the policy (observation history, action queue, noise stream),
its request budget, and the policy calls it makes (run on the server's single inference thread)."""

from __future__ import annotations

import inspect
import time
from typing import Any

import numpy as np
import torch

from scorepolicy.errors import ScorePolicyError
from scorepolicy.serving.protocol import Request
from scorepolicy.serving.wire import WireError

REQUEST_FIELD = {"reset": "goal", "select_action": "obs", "predict_chunk": "obs"}
"""The field an error of the policy is reported against, per message type."""


class TokenBucket:
    """A request budget: `burst` requests at once, refilled at `rate` per second (rate 0: unlimited)."""

    def __init__(self, rate: float, burst: int) -> None:
        self.rate = rate
        self.capacity = float(burst)
        self.tokens = self.capacity
        self.stamp = time.monotonic()

    def take(self) -> bool:
        """Spend one request if the budget allows it."""
        if self.rate <= 0:
            return True
        now = time.monotonic()
        self.tokens = min(self.capacity, self.tokens + (now - self.stamp) * self.rate)
        self.stamp = now
        if self.tokens < 1.0:
            return False
        self.tokens -= 1.0
        return True


class Session:
    """A client's policy state. `policy` is the session's own copy of the served policy; every method that
    touches it runs on the inference thread, one call at a time."""

    def __init__(self, sid: int, peer: str, bucket: TokenBucket) -> None:
        self.id = sid
        self.peer = peer
        self.bucket = bucket
        self.policy: Any = None
        self.goal: dict[str, Any] | None = None
        self.requests = 0

    def run(self, req: Request) -> dict[str, Any]:
        """The reply to a checked request (without timings); WireError for what the policy refuses."""
        t0 = time.perf_counter()
        try:
            with torch.inference_mode():
                reply = self._dispatch(req)
        except ScorePolicyError as e:
            raise WireError(REQUEST_FIELD.get(req.type, req.type), str(e)) from None
        reply["infer_ms"] = (time.perf_counter() - t0) * 1000.0
        return reply

    def answers_inline(self, req: Request) -> bool:
        """Whether the request only pops an action the policy already planned (microseconds: answered on
        the event loop, without a hop to the inference thread). Policies without `queued_actions` always
        go to the inference thread."""
        if req.type != "select_action" or req.obs is None:
            return False
        queued = getattr(self.policy, "queued_actions", 0)
        return isinstance(queued, int) and queued > 0

    def _dispatch(self, req: Request) -> dict[str, Any]:
        guarded = is_guarded(self.policy)
        if req.type == "reset":
            if guarded and req.goal is not None:
                raise WireError(
                    "goal", "a guarded policy takes its goal in the observation; reset without one"
                )
            self.policy.reset(seed=req.seed, **({} if guarded else {"goal": req.goal}))
            self.goal = req.goal
            return {"type": "reset"}
        assert req.obs is not None
        if req.type == "select_action":
            if guarded:
                action, alarm = self.policy.select_action(req.obs)
                return {
                    "type": "action",
                    "action": np.asarray(action, np.float32),
                    "alarm": alarm_dict(alarm),
                }
            action = self.policy.select_action(req.obs)
            return {"type": "action", "action": np.asarray(action, dtype=np.float32)}
        return {"type": "chunk", "actions": self._chunk(req.obs, req.noise)}

    def _chunk(self, obs: np.ndarray | dict[str, np.ndarray], noise: np.ndarray | None) -> np.ndarray:
        """The whole action chunk for one observation history (or a batch of them; with cameras, a dict
        {"state", camera keys} of histories)."""
        single = (obs["state"] if isinstance(obs, dict) else obs).ndim == 2
        history: Any
        if isinstance(obs, dict):
            history = {k: torch.from_numpy(v[None] if single else v) for k, v in obs.items()}
        else:
            history = torch.from_numpy(obs[None] if single else obs)
        kwargs: dict[str, Any] = {}
        if self.goal is not None:
            kwargs["goal"] = self.goal
        if noise is not None:
            if "noise" not in inspect.signature(acting_policy(self.policy).predict_action_chunk).parameters:
                raise WireError("noise", "this policy kind takes no initial noise; leave it out")
            kwargs["noise"] = torch.from_numpy(noise[None] if single else noise)
        chunk = acting_policy(self.policy).predict_action_chunk(history, **kwargs)
        out = chunk.detach().float().numpy()
        return out[0] if single else out


def is_guarded(policy: Any) -> bool:
    """Whether `policy` is a GuardedPolicy (the guard is imported only when a policy is checked, so that
    importing the client does not import the guard and its evaluation code)."""
    from scorepolicy.guard import GuardedPolicy

    return isinstance(policy, GuardedPolicy)


def acting_policy(policy: Any) -> Any:
    """The policy that samples chunks: a guarded policy's own policy, else the policy itself."""
    return policy.policy if is_guarded(policy) else policy


def alarm_dict(alarm: Any) -> dict[str, Any]:
    """A guard's alarm as plain values for the reply (lists per batch row for batched observations)."""

    def plain(value: Any) -> Any:
        return value.tolist() if isinstance(value, (np.ndarray, np.generic)) else value

    return {
        "raised": plain(alarm.raised),
        "scores": {k: plain(v) for k, v in alarm.scores.items()},
        "thresholds": {k: plain(v) for k, v in alarm.thresholds.items()},
        "first_alarm_step": plain(alarm.first_alarm_step),
    }

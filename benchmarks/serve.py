"""Policy server latency on loopback: round trips of `select_action` at batch 1 with 1, 4 and 16 clients,
against the in-process policy (the overhead target: ≤ 1 ms p50 with one client).

The server runs as `scorepolicy serve` in its own process (one inference thread, one torch thread, no
rate limit); clients are PolicyClients on threads of this process, each in its own session, each sending
its next request when the previous reply arrived. `select_action` re-plans every n_action_steps calls, so
most calls pop a queued action and every n_action_steps-th runs a whole chunk: the p50 is a queued call,
the p99 a chunk. The server's own handling time (decode, checks, policy call, reply; no network) is
timed by calling its handler directly. In-process and one-client round trips are timed in alternating blocks on the same
observation sequence, so call i of each does the same work; the overhead is the difference of the p50s
(and the median of the per-call differences). Also timed: `ping` (transport only) and `predict_chunk`
against `predict_action_chunk` in-process. The machine's load average is recorded with the numbers.

    python benchmarks/serve.py --run runs/pusht           # default: an untrained Push-T-shaped run
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import tyro

from scorepolicy import api
from scorepolicy.files import atomic_write_json
from scorepolicy.policies import ChunkPolicy, PolicyConfig, ScorePolicy
from scorepolicy.provenance import package_version, provenance
from scorepolicy.serving import PolicyClient

RESULTS = Path(__file__).parent / "results"


@dataclass
class Args:
    """Serving benchmark options."""

    run: Path | None = None
    """Run directory to serve (default: an untrained policy of Push-T's shapes and default config; latency
    does not depend on the weights' values)."""
    clients: tuple[int, ...] = (1, 4, 16)
    """Concurrent client counts to time."""
    requests: int = 2000
    """select_action round trips per client count (split evenly over the clients)."""
    blocks: int = 10
    """Alternating in-process / one-client blocks for the overhead."""
    block_calls: int = 200
    """Calls per block."""
    chunk_calls: int = 300
    """predict_chunk round trips (and in-process chunks) timed."""
    out: Path = RESULTS / "serve.json"
    """Result JSON."""


def pusht_shaped_run(directory: Path) -> Path:
    """An untrained score policy with Push-T's sizes (obs 6, action 2) and the default MLP, saved as a run."""
    torch.manual_seed(0)
    policy = ScorePolicy(PolicyConfig(obs_dim=6, action_dim=2))
    policy.set_normalization(
        {
            "obs": {"min": np.zeros(6), "max": np.array([512, 512, 512, 512, 2 * np.pi, 1.0])},
            "action": {"min": np.zeros(2), "max": np.full(2, 512.0)},
        }
    )
    policy.save_pretrained(directory)
    return directory


def start_server(run: Path) -> tuple[subprocess.Popen[str], str]:
    """`scorepolicy serve RUN` in a child process on a free port; (process, ws URL)."""
    cmd = [sys.executable, "-m", "scorepolicy.cli", "serve", str(run), "--port", "0", "--rate", "0"]
    cmd += ["--max-sessions", "64", "--log-level", "warning"]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    line = proc.stdout.readline()
    if "ws://" not in line:
        proc.kill()
        raise RuntimeError(f"server did not start: {line!r}")
    return proc, line.split()[3]


def quantiles(ms: list[float]) -> dict[str, float]:
    """p50, p90, p99 and mean of millisecond timings."""
    s = sorted(ms)
    at = lambda q: s[min(len(s) - 1, int(q * len(s)))]  # noqa: E731
    return {
        "p50": statistics.median(s),
        "p90": at(0.90),
        "p99": at(0.99),
        "mean": statistics.fmean(s),
        "n": len(s),
    }


def timed(fn: Callable[[Any], Any], inputs: Any) -> list[float]:
    """Milliseconds of fn(x) for each x."""
    out = []
    for x in inputs:
        t0 = time.perf_counter()
        fn(x)
        out.append((time.perf_counter() - t0) * 1000.0)
    return out


def overhead(url: str, policy: ChunkPolicy, obs: np.ndarray, args: Args) -> dict[str, Any]:
    """In-process vs one-client select_action, alternating blocks on the same observation sequence."""
    local: list[float] = []
    remote: list[float] = []
    server_ms: list[float] = []
    with PolicyClient(url) as client:
        for _ in range(args.blocks):
            policy.reset(seed=0)
            local += timed(policy.select_action, obs)
            client.reset(seed=0)

            def call(o: np.ndarray) -> None:
                client.select_action(o)
                server_ms.append(float(client.last_reply["server_ms"]))

            remote += timed(call, obs)
        pings = timed(lambda _: client.ping(), range(args.block_calls * 2))
    diffs = [r - loc for r, loc in zip(remote, local)]
    return {
        "in_process_select_action_ms": quantiles(local),
        "one_client_select_action_ms": quantiles(remote),
        "server_side_ms": quantiles(server_ms),
        "ping_ms": quantiles(pings),
        "overhead_p50_ms": statistics.median(remote) - statistics.median(local),
        "overhead_median_paired_ms": statistics.median(diffs),
    }


def chunks(url: str, policy: ChunkPolicy, args: Args) -> dict[str, Any]:
    """predict_chunk round trips vs predict_action_chunk in-process (one history, batch 1)."""
    cfg = policy.cfg
    history = np.random.default_rng(1).uniform(0, 512, size=(cfg.n_obs_steps, cfg.obs_dim)).astype(np.float32)
    tensor = torch.from_numpy(history[None])
    with torch.inference_mode():
        local = timed(lambda _: policy.predict_action_chunk(tensor), range(args.chunk_calls))
    with PolicyClient(url) as client:
        remote = timed(lambda _: client.predict_chunk(history), range(args.chunk_calls))
    return {
        "in_process_chunk_ms": quantiles(local),
        "predict_chunk_round_trip_ms": quantiles(remote),
        "overhead_p50_ms": statistics.median(remote) - statistics.median(local),
    }


def server_handling(run: Path, calls: int) -> dict[str, Any]:
    """The server's own time per request without network or process scheduling: its request handler
    (decode, checks, policy call, reply) called directly in this process, for ping and select_action."""
    import asyncio
    import copy

    from scorepolicy.serving import PolicyServer, ServeConfig
    from scorepolicy.serving.session import Session, TokenBucket
    from scorepolicy.serving.wire import pack

    server = PolicyServer(run, ServeConfig(port=0, rate=0))
    session = Session(1, "benchmark", TokenBucket(0, 1))
    session.policy = copy.deepcopy(server.template)
    obs = np.random.default_rng(2).uniform(0, 512, size=(calls, server.spec.obs_dim)).astype(np.float32)

    async def run_all() -> dict[str, Any]:
        await server.start()  # the inference thread; clients never connect
        try:
            out = {}
            for name, frames in (
                ("ping", [pack({"type": "ping"})] * calls),
                ("select_action", [pack({"type": "select_action", "obs": o}) for o in obs]),
            ):
                ms = []
                for frame in frames:
                    t0 = time.perf_counter()
                    pack(await server._reply(session, frame))  # the handler of a connection's frames
                    ms.append((time.perf_counter() - t0) * 1000.0)
                out[name] = quantiles(ms)
            return out
        finally:
            await server.stop()

    return asyncio.run(run_all())


def concurrent(url: str, n_clients: int, total: int, obs_dim: int) -> dict[str, Any]:
    """n_clients sessions, each sending total/n_clients select_action requests back to back."""
    per_client = max(1, total // n_clients)
    times: list[list[float]] = [[] for _ in range(n_clients)]
    errors: list[BaseException] = []
    start = threading.Barrier(n_clients + 1)

    def loop(i: int) -> None:
        try:
            obs = np.random.default_rng(i).uniform(0, 512, size=(per_client, obs_dim)).astype(np.float32)
            with PolicyClient(url) as client:
                client.reset(seed=i)
                for o in obs[:20]:  # warm-up
                    client.select_action(o)
                start.wait()
                times[i] = timed(client.select_action, obs)
        except BaseException as e:
            errors.append(e)
            start.abort()

    threads = [threading.Thread(target=loop, args=(i,)) for i in range(n_clients)]
    for t in threads:
        t.start()
    start.wait()
    t0 = time.perf_counter()
    for t in threads:
        t.join()
    wall = time.perf_counter() - t0
    if errors:
        raise errors[0]
    flat = [x for per in times for x in per]
    return {
        "clients": n_clients,
        "requests": len(flat),
        "requests_per_s": len(flat) / wall,
        **quantiles(flat),
    }


def main(args: Args) -> dict[str, Any]:
    """Run every timing and write the result JSON."""
    torch.set_num_threads(1)
    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory() as tmp:
        run = args.run if args.run is not None else pusht_shaped_run(Path(tmp) / "pusht_shaped")
        policy = api.load_policy(run)
        obs = (
            np.random.default_rng(0)
            .uniform(0, 512, size=(args.block_calls, policy.cfg.obs_dim))
            .astype(np.float32)
        )
        handling = server_handling(run, args.block_calls * args.blocks)
        proc, url = start_server(run)
        try:
            single = overhead(url, policy, obs, args)
            chunk = chunks(url, policy, args)
            loopback = [concurrent(url, k, args.requests, policy.cfg.obs_dim) for k in args.clients]
        finally:
            proc.terminate()
            proc.wait(timeout=60)
    result = {
        "run": str(args.run) if args.run is not None else "untrained Push-T-shaped policy (default MLP)",
        "policy": {
            "obs_dim": policy.cfg.obs_dim,
            "action_dim": policy.cfg.action_dim,
            "denoiser": policy.cfg.denoiser,
            "nfe": policy.cfg.diffusion.nfe,
            "sampler": policy.cfg.diffusion.sampler,
            "n_action_steps": policy.cfg.n_action_steps,
        },
        "setup": "server: `scorepolicy serve --rate 0` child process, one inference thread, 1 torch thread; clients: "
        "PolicyClient threads in the benchmark process; loopback; batch 1",
        "server_handling_ms": handling,
        "one_client": single,
        "chunk": chunk,
        "loopback": loopback,
        "cpu_count": os.cpu_count(),
        "load_average_before": load_before,
        "load_average_after": os.getloadavg(),
        "versions": {name: package_version(name) for name in ("websockets", "msgpack")},
        "provenance": provenance("pusht"),
    }
    atomic_write_json(args.out, result)
    return result


def print_table(r: dict[str, Any]) -> None:
    """The result as a few lines and a Markdown table."""
    one = r["one_client"]
    print(
        f"in-process select_action p50 {one['in_process_select_action_ms']['p50']:.3f} ms, "
        f"p99 {one['in_process_select_action_ms']['p99']:.3f} ms"
    )
    print(
        f"one client select_action p50 {one['one_client_select_action_ms']['p50']:.3f} ms "
        f"(overhead p50 {one['overhead_p50_ms']:.3f} ms, paired median {one['overhead_median_paired_ms']:.3f} ms); "
        f"ping p50 {one['ping_ms']['p50']:.3f} ms"
    )
    h = r["server_handling_ms"]
    print(
        f"server handling without network: ping p50 {h['ping']['p50'] * 1000:.1f} µs, select_action p50 "
        f"{h['select_action']['p50'] * 1000:.1f} µs (p99 {h['select_action']['p99']:.3f} ms: chunks via the inference thread)"
    )
    c = r["chunk"]
    print(
        f"chunk: in-process p50 {c['in_process_chunk_ms']['p50']:.3f} ms, predict_chunk round trip p50 "
        f"{c['predict_chunk_round_trip_ms']['p50']:.3f} ms"
    )
    print("| clients | requests | p50 ms | p90 ms | p99 ms | requests/s |")
    print("|---|---|---|---|---|---|")
    for row in r["loopback"]:
        print(
            f"| {row['clients']} | {row['requests']} | {row['p50']:.3f} | {row['p90']:.3f} | {row['p99']:.3f} | "
            f"{row['requests_per_s']:.0f} |"
        )
    print(
        f"load average before {r['load_average_before']}, after {r['load_average_after']} on {r['cpu_count']} CPUs"
    )


if __name__ == "__main__":
    print_table(main(tyro.cli(Args)))

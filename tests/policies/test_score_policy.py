"""ScorePolicy: shapes, action queue, save/load round trip, and one-line errors on bad input."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from tests.conftest import tiny_policy, toy_windows

from scorepolicy.errors import ScorePolicyError
from scorepolicy.policies import ScorePolicy


@pytest.mark.parametrize("denoiser", ["mlp", "transformer", "unet1d"])
def test_loss_and_chunk_shapes(denoiser: str) -> None:
    policy = tiny_policy(denoiser)
    batch = toy_windows().batch(np.arange(8))
    loss, info = policy.compute_loss({k: torch.from_numpy(v) for k, v in batch.items()})
    assert loss.ndim == 0 and torch.isfinite(loss) and info["loss"] == pytest.approx(loss.item())
    chunk = policy.predict_action_chunk(torch.from_numpy(batch["obs"]))
    assert chunk.shape == (8, 4, 2)
    # actions stay inside the normalisation range (the sampler clamps in normalised space)
    assert torch.all(chunk >= policy.action_min - 1e-5) and torch.all(chunk <= policy.action_max + 1e-5)


def test_select_action_replans_every_n_action_steps() -> None:
    policy = tiny_policy()
    calls: list[torch.Tensor] = []
    original = policy.predict_action_chunk

    def spy(obs: torch.Tensor, **kw: object) -> torch.Tensor:
        calls.append(obs.clone())
        return original(obs)

    policy.predict_action_chunk = spy  # type: ignore[method-assign]
    policy.reset()
    for t in range(5):
        a = policy.select_action(np.full((3, 3), float(t), dtype=np.float32))
        assert isinstance(a, np.ndarray) and a.shape == (3, 2)
    assert len(calls) == 3  # steps 0, 2, 4 with n_action_steps = 2
    assert calls[0][:, 0].eq(0).all() and calls[0][:, 1].eq(0).all()  # history padded with the first obs
    assert calls[1][0, :, 0].tolist() == [1.0, 2.0]  # then the last two observations, oldest first


def test_single_observation_and_batch_change() -> None:
    policy = tiny_policy()
    obs = np.array([0.3, -0.2, 0.5], dtype=np.float32)
    policy.reset(seed=7)
    single = policy.select_action(obs)
    policy.reset(seed=7)
    batched = policy.select_action(obs[None])
    assert single.shape == (2,) and batched.shape == (1, 2)
    np.testing.assert_array_equal(single, batched[0])  # a single observation is a batch of one
    policy.reset(seed=7)
    policy.select_action(obs)
    with pytest.raises(ScorePolicyError, match="batch size changed"):
        policy.select_action(np.zeros((4, 3), dtype=np.float32))


def test_wrong_observation_size_is_a_one_line_error() -> None:
    policy = tiny_policy()
    with pytest.raises(ScorePolicyError, match=r"expected shape \(batch, 3\), got \(1, 5\)") as e:
        policy.select_action(np.zeros((1, 5), dtype=np.float32))
    assert "\n" not in str(e.value)
    with pytest.raises(ScorePolicyError, match="NaN"):
        policy.predict_action_chunk(torch.full((1, 2, 3), float("nan")))


@pytest.mark.parametrize("denoiser", ["mlp", "transformer", "unet1d"])
def test_save_load_gives_bit_identical_actions(tmp_path: Path, denoiser: str) -> None:
    policy = tiny_policy(denoiser).eval()
    policy.save_pretrained(tmp_path)
    loaded = ScorePolicy.from_pretrained(tmp_path)
    obs = torch.from_numpy(toy_windows().batch(np.arange(5))["obs"])
    noise = torch.randn(5, 4, 2)
    assert torch.equal(
        policy.predict_action_chunk(obs, noise=noise), loaded.predict_action_chunk(obs, noise=noise)
    )
    policy.reset(seed=7)
    loaded.reset(seed=7)
    assert torch.equal(policy.predict_action_chunk(obs), loaded.predict_action_chunk(obs))
    assert loaded.cfg == policy.cfg
    assert torch.equal(loaded.action_min, policy.action_min) and torch.equal(loaded.obs_max, policy.obs_max)


def test_same_sampling_seed_same_actions_other_seed_differs() -> None:
    policy = tiny_policy()
    obs = torch.from_numpy(toy_windows().batch(np.arange(4))["obs"])
    policy.reset(seed=1)
    a = policy.predict_action_chunk(obs)
    policy.reset(seed=1)
    b = policy.predict_action_chunk(obs)
    policy.reset(seed=2)
    c = policy.predict_action_chunk(obs)
    assert torch.equal(a, b) and not torch.equal(a, c)


def _saved(tmp_path: Path) -> Path:
    tiny_policy().save_pretrained(tmp_path)
    return tmp_path


def test_checkpoint_errors_name_the_file(tmp_path: Path) -> None:
    with pytest.raises(ScorePolicyError, match="no such run directory"):
        ScorePolicy.from_pretrained(tmp_path / "nope")
    run = _saved(tmp_path / "a")
    (run / "model.safetensors").unlink()
    with pytest.raises(ScorePolicyError, match=r"model\.safetensors: file not found"):
        ScorePolicy.from_pretrained(run)
    run = _saved(tmp_path / "b")
    (run / "config.json").write_text("{not json")
    with pytest.raises(ScorePolicyError, match=r"config\.json: invalid JSON"):
        ScorePolicy.from_pretrained(run)
    run = _saved(tmp_path / "c")
    meta = json.loads((run / "config.json").read_text())
    meta["policy"]["horizon"] = 8
    (run / "config.json").write_text(json.dumps(meta))
    with pytest.raises(ScorePolicyError, match=r"config\.json implies"):
        ScorePolicy.from_pretrained(run)
    meta["policy"]["horizon"] = 4
    meta["policy"]["bogus"] = 1
    (run / "config.json").write_text(json.dumps(meta))
    with pytest.raises(ScorePolicyError, match="unknown field 'bogus'"):
        ScorePolicy.from_pretrained(run)
    run = _saved(tmp_path / "d")
    (run / "model.safetensors").write_bytes(b"\x00" * 20)
    with pytest.raises(ScorePolicyError, match="not a readable safetensors file"):
        ScorePolicy.from_pretrained(run)


def test_bad_normalisation_statistics_are_refused(tmp_path: Path) -> None:
    policy = tiny_policy()
    state = policy.state_dict()
    state["action_min"] = torch.tensor([5.0, 5.0])  # min > max
    policy.save_pretrained(tmp_path, state)
    with pytest.raises(ScorePolicyError, match="invalid action normalisation"):
        ScorePolicy.from_pretrained(tmp_path)


@pytest.mark.parametrize("denoiser", ["mlp", "transformer", "unet1d"])
def test_frozen_inference_copy_matches_eager_and_is_dropped_on_train(denoiser: str) -> None:
    policy = tiny_policy(denoiser).eval()
    for p in policy.denoiser.out.parameters():  # the output layer starts at zero; make it matter
        torch.nn.init.normal_(p, std=0.3)
    for batch in (1, 5):
        obs = torch.from_numpy(toy_windows().batch(np.arange(batch))["obs"])
        noise = torch.randn(batch, 4, 2)
        eager = policy.predict_action_chunk(obs, noise=noise)
        fast = policy.optimize_for_inference().predict_action_chunk(obs, noise=noise)
        assert torch.allclose(eager, fast, atol=1e-5)
        assert not torch.equal(eager, torch.zeros_like(eager))
    policy.train()
    assert not policy._fast
    assert "_fast" not in "".join(policy.state_dict())


@pytest.mark.parametrize("denoiser", ["mlp", "transformer", "unet1d"])
@pytest.mark.parametrize("sampler", ["ddim", "heun", "dpmpp_2m"])
def test_whole_chunk_graph_matches_step_by_step_sampling(denoiser: str, sampler: str) -> None:
    """Frozen policies with a deterministic sampler run each chunk as one traced graph: same actions."""
    policy = tiny_policy(denoiser).eval()
    policy.cfg.diffusion.sampler = sampler  # type: ignore[assignment]
    for p in policy.denoiser.out.parameters():
        torch.nn.init.normal_(p, std=0.3)
    frozen = ScorePolicy(policy.cfg)
    frozen.load_state_dict(policy.state_dict())
    frozen.optimize_for_inference()
    for batch, nfe in ((1, 3), (5, 3), (3, 5)):
        obs = torch.from_numpy(toy_windows().batch(np.arange(batch))["obs"])
        noise = torch.randn(batch, 4, 2)
        step_by_step = policy.predict_action_chunk(obs, noise=noise, nfe=nfe)
        graph = frozen.predict_action_chunk(obs, noise=noise, nfe=nfe)
        assert torch.allclose(step_by_step, graph, atol=1e-4), (batch, nfe)
    assert len(frozen._graphs) == 2 and all(g is not None for g in frozen._graphs.values())
    assert not policy._graphs  # never built while not frozen


def test_stochastic_sampler_is_not_traced() -> None:
    """Euler-ancestral draws noise at every step: it keeps the step-by-step path and its RNG stream."""
    policy = tiny_policy()
    policy.cfg.diffusion.sampler = "euler_ancestral"
    obs = torch.from_numpy(toy_windows().batch(np.arange(2))["obs"])
    policy.reset(seed=3)
    eager = policy.predict_action_chunk(obs)
    policy.optimize_for_inference().reset(seed=3)
    assert torch.allclose(policy.predict_action_chunk(obs), eager, atol=1e-5)
    assert not policy._graphs


def test_frozen_normalisation_cache_follows_new_statistics() -> None:
    """Scales kept while frozen are dropped when the statistics change (set_normalization clears them)."""
    policy = tiny_policy().optimize_for_inference()
    x = torch.ones(1, 2)
    before = policy.normalize("action", x)
    assert torch.equal(policy.normalize("action", x), before)  # served from the cache
    policy.set_normalization(
        {
            "obs": {"min": np.full(policy.cfg.obs_dim, -4.0), "max": np.full(policy.cfg.obs_dim, 4.0)},
            "action": {"min": np.full(2, -2.0), "max": np.full(2, 2.0)},
        }
    )
    assert torch.allclose(policy.normalize("action", x), torch.full((1, 2), 0.5))
    assert not torch.equal(policy.normalize("action", x), before)


def test_whole_chunk_graph_follows_new_statistics() -> None:
    """The graph holds the statistics as constants: new statistics rebuild it."""
    policy = tiny_policy().optimize_for_inference()
    obs = torch.from_numpy(toy_windows().batch(np.arange(2))["obs"])
    noise = torch.randn(2, 4, 2)
    before = policy.predict_action_chunk(obs, noise=noise)
    assert policy._graphs
    stats = {
        "obs": {"min": np.full(policy.cfg.obs_dim, -4.0), "max": np.full(policy.cfg.obs_dim, 4.0)},
        "action": {"min": np.full(2, -20.0), "max": np.full(2, 20.0)},
    }
    policy.set_normalization(stats)
    assert not policy._graphs
    after = policy.predict_action_chunk(obs, noise=noise)
    reference = tiny_policy()
    reference.set_normalization(stats)
    assert torch.allclose(after, reference.predict_action_chunk(obs, noise=noise), atol=1e-4)
    assert not torch.allclose(after, before, atol=1e-2)


@pytest.mark.parametrize("frozen", [False, True])
def test_chunks_from_condition_equal_chunks_from_observations(frozen: bool) -> None:
    """predict_from_condition on `observation_embedding` gives the chunks of predict_action_chunk (same batch;
    bit for bit where both encode eagerly: a frozen graph's own encoding may differ in the last bits, the
    guard takes its embedding from a graph, tests/guard); one observation's row repeated samples many
    chunks of it."""
    policy = tiny_policy()
    for p in policy.denoiser.out.parameters():
        torch.nn.init.normal_(p, std=0.3)
    if frozen:
        policy.optimize_for_inference()
    obs = torch.from_numpy(toy_windows().batch(np.arange(3))["obs"])
    noise = torch.randn(3, 4, 2, generator=torch.Generator().manual_seed(0))
    direct = policy.predict_from_condition(policy.observation_embedding(obs), noise)
    chunks = policy.predict_action_chunk(obs, noise=noise)
    assert torch.allclose(direct, chunks, atol=1e-5) and (frozen or torch.equal(direct, chunks))
    repeated = policy.predict_from_condition(policy.observation_embedding(obs[:1]).expand(3, -1), noise)
    for i in range(3):  # bit equality across batch sizes depends on the matmul kernels (tests/guard)
        alone = policy.predict_action_chunk(obs[:1], noise=noise[i : i + 1])
        assert torch.allclose(repeated[i], alone[0], atol=1e-5)
    assert not torch.allclose(repeated[0], repeated[1])  # other noise, other chunk
    assert (policy._sampler_graph(None) is not None) == frozen


def test_chunks_from_condition_refuse_goals_and_wrong_shapes() -> None:
    policy = tiny_policy()
    cond = policy.observation_embedding(torch.from_numpy(toy_windows().batch(np.arange(2))["obs"]))
    with pytest.raises(ScorePolicyError, match="noise"):
        policy.predict_from_condition(cond, torch.zeros(3, 4, 2))
    cfg = tiny_policy().cfg
    cfg.goal.n_tasks = 2
    with pytest.raises(ScorePolicyError, match="goal-conditioned"):
        ScorePolicy(cfg).predict_from_condition(cond, torch.zeros(2, 4, 2))

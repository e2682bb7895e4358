"""Camera observations: encoders, crops, image windows, the image policy's inputs, save/load, and a tiny image
task learnt from pixels."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from scorepolicy.api.training import DataConfig, build_datasets, make_policy
from scorepolicy.data.windows import WindowDataset
from scorepolicy.envs.target_image import TARGET_IMAGE_TASK, generate_target_demos
from scorepolicy.errors import ScorePolicyError
from scorepolicy.evaluation import EvalConfig, evaluate
from scorepolicy.models import MLPConfig
from scorepolicy.models.vision import (
    ImageEncoder,
    SpatialSoftmax,
    VisionConfig,
    centre_crop,
    random_crop,
)
from scorepolicy.policies import ChunkPolicy, PolicyConfig, ScorePolicy
from scorepolicy.training.loop import to_torch

CAM = {"cam": (32, 32, 3)}


def image_config(**vision: object) -> PolicyConfig:
    """A small image policy config: state of size 2, one 32×32 camera."""
    return PolicyConfig(
        obs_dim=2,
        action_dim=2,
        n_obs_steps=2,
        horizon=4,
        n_action_steps=2,
        mlp=MLPConfig(width=64, n_blocks=2, cond_dim=64, sigma_dim=16),
        image_shapes=dict(CAM),
        vision=VisionConfig(crop=28, cnn_channels=(16, 32), keypoints=8, feature_dim=16, **vision),  # type: ignore[arg-type]
    )


def frames(*lead: int, seed: int = 0) -> torch.Tensor:
    return torch.randint(
        0, 256, (*lead, 32, 32, 3), dtype=torch.uint8, generator=torch.Generator().manual_seed(seed)
    )


@pytest.mark.parametrize("encoder", ["cnn", "resnet18"])
@pytest.mark.parametrize("shared", [False, True])
def test_encoder_output_shapes(encoder: str, shared: bool) -> None:
    cfg = VisionConfig(encoder=encoder, crop=84, feature_dim=24, shared=shared)  # type: ignore[arg-type]
    enc = ImageEncoder(cfg, {"top": (96, 96, 3), "wrist": (96, 96, 3)}).eval()
    images = {k: torch.randint(0, 256, (3, 2, 96, 96, 3), dtype=torch.uint8) for k in ("top", "wrist")}
    with torch.no_grad():
        out = enc(images)
    assert out.shape == (3, 2, 48) and enc.out_dim == 48
    assert torch.isfinite(out).all()
    assert len(enc.nets) == (1 if shared else 2)


def test_spatial_softmax_keypoint_lands_on_the_bright_spot() -> None:
    head = SpatialSoftmax(3, keypoints=1)
    with torch.no_grad():
        head.conv.weight.fill_(20.0)  # the heat map is the image's brightness, sharpened
        head.conv.bias.zero_()
    for row, col in ((5, 30), (17, 3), (0, 0)):
        image = torch.zeros(1, 3, 24, 32)
        image[0, :, row, col] = 1.0
        x, y = head(image)[0].tolist()
        assert x == pytest.approx(-1 + 2 * col / 31, abs=0.02)
        assert y == pytest.approx(-1 + 2 * row / 23, abs=0.02)


def test_random_crop_gathers_each_frames_own_window() -> None:
    batch = frames(4, 3)
    corners = torch.tensor([[[0, 4], [1, 2], [4, 0]], [[2, 2], [3, 1], [0, 0]]] * 2)[:4]

    def offsets(shape: tuple[int, ...], high: int) -> torch.Tensor:
        assert shape == (4, 3) and high == 5
        offsets.calls += 1  # type: ignore[attr-defined]
        return corners[..., offsets.calls - 1]  # type: ignore[attr-defined]

    offsets.calls = 0  # type: ignore[attr-defined]
    out = random_crop(batch, 28, offsets)
    assert out.shape == (4, 3, 28, 28, 3)
    for b in range(4):
        for t in range(3):
            top, left = corners[b, t].tolist()
            assert torch.equal(out[b, t], batch[b, t, top : top + 28, left : left + 28])


def test_crop_is_random_in_training_and_centred_in_eval() -> None:
    enc = ImageEncoder(VisionConfig(crop=28), CAM)
    batch = frames(8, 2)
    gen = torch.Generator().manual_seed(0)

    def offsets(shape: tuple[int, ...], high: int) -> torch.Tensor:
        return torch.randint(0, high, shape, generator=gen)

    enc.train()
    first, second = enc.prepare(batch, 0, offsets), enc.prepare(batch, 0, offsets)
    assert first.shape == (16, 3, 28, 28)
    assert not torch.equal(first, second)  # fresh corners each call
    enc.eval()
    centre = centre_crop(batch, 28).flatten(0, 1).permute(0, 3, 1, 2).float() / 255
    assert torch.equal(enc.prepare(batch, 0, offsets), centre)
    assert torch.equal(enc.prepare(batch, 0, None), centre)


def test_image_windows_keep_uint8_frames_aligned_with_observations() -> None:
    obs = np.arange(20, dtype=np.float32)[:, None].repeat(2, axis=1)
    images = {
        "cam": np.broadcast_to(np.arange(20, dtype=np.uint8)[:, None, None, None], (20, 32, 32, 3)).copy()
    }
    data = WindowDataset(obs, obs.copy(), np.array([8, 20]), n_obs_steps=2, horizon=4, images=images)
    batch = data.batch(np.array([0, 9, 19]))
    cam = batch["images"]["cam"]
    assert cam.dtype == np.uint8 and cam.shape == (3, 2, 32, 32, 3)
    np.testing.assert_array_equal(cam[:, :, 0, 0, 0], batch["obs"][:, :, 0].astype(np.uint8))
    with pytest.raises(ScorePolicyError, match="camera 'cam'"):
        WindowDataset(obs, obs, np.array([20]), 2, 4, images={"cam": images["cam"][:5]})


def _policy() -> ScorePolicy:
    torch.manual_seed(0)
    return ScorePolicy(image_config())


def test_image_policy_trains_on_image_batches() -> None:
    policy = _policy()
    batch = {"obs": torch.randn(4, 2, 2), "action": torch.randn(4, 4, 2), "images": {"cam": frames(4, 2)}}
    loss, info = policy.compute_loss(batch, torch.Generator().manual_seed(0))
    loss.backward()
    enc = policy.image_encoder
    assert enc is not None and np.isfinite(info["loss"])
    assert all(p.grad is not None for p in enc.parameters())


@pytest.mark.parametrize(
    ("obs", "message"),
    [
        ({"state": np.zeros(2, np.float32)}, r"camera 'cam' missing"),
        (
            {"state": np.zeros(2, np.float32), "cam": np.zeros((30, 32, 3), np.uint8)},
            r"camera 'cam' has shape \(1, 30, 32, 3\), expected \(1, 32, 32, 3\)",
        ),
        ({"state": np.zeros(2, np.float32), "cam": np.zeros((32, 32, 3), np.float32)}, r"dtype .*uint8"),
        (
            {"state": np.zeros(2, np.float32), "cam": np.zeros((32, 32, 3), np.uint8), "top": 0},
            "unexpected key 'top'",
        ),
        ({"cam": np.zeros((32, 32, 3), np.uint8)}, "key 'state' missing"),
        (np.zeros(2, np.float32), "pass a dict with keys state, cam"),
    ],
)
def test_wrong_image_inputs_are_refused_in_one_line(obs: object, message: str) -> None:
    policy = _policy().eval()
    with pytest.raises(ScorePolicyError, match=message) as err:
        policy.select_action(obs)  # type: ignore[arg-type]
    assert "\n" not in str(err.value)


def test_image_policy_save_load_round_trip_gives_identical_actions(tmp_path: Path) -> None:
    policy = _policy().eval()
    policy.save_pretrained(tmp_path)
    loaded = ChunkPolicy.from_pretrained(tmp_path)
    assert loaded.cfg.image_shapes == CAM and loaded.cfg == policy.cfg
    history = {"state": torch.randn(3, 2, 2), "cam": frames(3, 2, seed=1)}
    noise = torch.randn(3, 4, 2)
    assert isinstance(loaded, ScorePolicy)
    torch.testing.assert_close(
        loaded.predict_action_chunk(history, noise=noise),
        policy.predict_action_chunk(history, noise=noise),
        rtol=0,
        atol=0,
    )
    loaded.optimize_for_inference()
    step = {"state": np.zeros((3, 2), np.float32), "cam": frames(3, seed=2).numpy()}
    policy.reset(seeds=[0, 1, 2])
    loaded.reset(seeds=[0, 1, 2])
    np.testing.assert_allclose(loaded.select_action(step), policy.select_action(step), atol=1e-5)


def test_state_only_config_json_has_no_vision_section() -> None:
    cfg = PolicyConfig(obs_dim=2, action_dim=2)
    assert "vision" not in cfg.used_dict() and "image_shapes" not in cfg.used_dict()
    assert "vision" in image_config().used_dict()


class _RandomPolicy:
    def __init__(self, seed: int) -> None:
        self.rng = np.random.default_rng(seed)

    def reset(self) -> None:
        pass

    def select_action(self, obs: dict[str, np.ndarray]) -> np.ndarray:
        return self.rng.uniform(-1, 1, (obs["state"].shape[0], 2)).astype(np.float32)


def test_tiny_image_task_learns_from_pixels_to_beat_a_random_policy() -> None:
    torch.manual_seed(0)
    episodes = generate_target_demos(60, seed=0)
    cfg = image_config()
    cfg.horizon, cfg.n_action_steps, cfg.n_obs_steps = 8, 4, 1
    train_data, _ = build_datasets(TARGET_IMAGE_TASK, episodes, cfg, DataConfig(val_fraction=0.0))
    policy = make_policy(TARGET_IMAGE_TASK, cfg, train_data, seed=0)
    opt = torch.optim.AdamW(policy.parameters(), lr=2e-3)
    gen, rng = torch.Generator().manual_seed(0), np.random.default_rng(0)
    for _ in range(100):
        loss, _ = policy.compute_loss(to_torch(train_data.batch(rng.integers(0, len(train_data), 32))), gen)
        opt.zero_grad()
        loss.backward()
        opt.step()
    eval_cfg = EvalConfig(episodes=30, n_envs=30, progress=False)
    learnt = evaluate(policy.eval(), TARGET_IMAGE_TASK, eval_cfg)
    random = evaluate(_RandomPolicy(0), TARGET_IMAGE_TASK, eval_cfg)
    assert learnt["success_rate"] >= random["success_rate"] + 0.3
    assert learnt["mean_final_distance"] < 0.6 * random["mean_final_distance"]

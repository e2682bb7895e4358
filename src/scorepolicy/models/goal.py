"""Goal encoder: a task id (learned embedding) and/or a goal vector, as one conditioning feature."""

from __future__ import annotations

import torch
from torch import Tensor, nn


class GoalEncoder(nn.Module):
    """g(task, goal) = E[task] + MLP(goal); the null goal (classifier-free guidance) is the zero feature."""

    def __init__(self, n_tasks: int, goal_dim: int, dim: int) -> None:
        super().__init__()
        self.task_embedding = nn.Embedding(n_tasks, dim) if n_tasks > 0 else None
        self.goal_mlp = (
            nn.Sequential(nn.Linear(goal_dim, dim), nn.Mish(), nn.Linear(dim, dim)) if goal_dim > 0 else None
        )
        self.dim = dim

    def forward(self, task: Tensor | None, goal: Tensor | None, keep: Tensor | None = None) -> Tensor:
        """Goal features (B, dim); `keep` (B,) in {0, 1} zeroes dropped samples' features."""
        parts: list[Tensor] = []
        if self.task_embedding is not None and task is not None:
            parts.append(self.task_embedding(task.long()))
        if self.goal_mlp is not None and goal is not None:
            parts.append(self.goal_mlp(goal))
        feat = torch.stack(parts).sum(0)
        return feat if keep is None else feat * keep.reshape(-1, 1).to(feat.dtype)

"""Push-T camera frames drawn the way Diffusion Policy recorded `data/img`, several times faster.

Diffusion Policy's Push-T (and gym-pusht, which reproduces it) draws the scene on a 512 × 512 pygame
canvas, white, with the goal T in light green, then lets pymunk's debug drawing paint every shape through
a pygame draw-options class, and shrinks the canvas with `cv2.resize` (bilinear) to 96 × 96. That debug
drawing spends most of its time in Python callbacks; `PushTRenderer` issues the same pygame primitives
itself, in the order pymunk uses (the block's two polygons, the agent, the walls, then a red segment per
contact point), and keeps the white canvas with the goal as a cached background and the walls as a
cached overlay. The result equals gym-pusht's own frame pixel for pixel except where a vertex rounds
differently (tested: identical on most states, a handful of 96-px pixels otherwise).

How each shape is drawn (gym-pusht's `pymunk_override.DrawOptions`, which is DP's): a circle is a disc in
its colour with a disc of radius − 4 in a lighter colour (each channel × 1.2, capped at 255, rounded) on top; a
polygon is filled with the lighter colour and outlined by "fat segments" of radius 2 in its colour; a fat
segment is a 4-px line, a quadrilateral offset by |perpendicular| (both components positive, a quirk kept
for fidelity) and a disc at each end. Every point is rounded to whole pixels (Python's `round`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from scorepolicy.errors import ScorePolicyError

CANVAS_PX = 512
"""The side of the canvas Push-T is drawn on (the simulator's units are these pixels)."""
CONTACT_COLOR = (231, 76, 60)
"""pymunk's default colour for collision points, which DP's frames carry while the agent pushes."""
_GOAL_COLOR = (144, 238, 144)
"""pygame's "LightGreen", the goal T."""
_POLY_OUTLINE_RADIUS = 2.0
_CONTACT_OFFSET = 2.0
"""chipmunk draws a contact from point A − 2·n to point B + 2·n (n: the contact normal)."""

Point = tuple[int, int]
Color = tuple[int, int, int]


def _px(x: float, y: float) -> Point:
    return round(x), round(y)


def light_color(color: Color) -> Color:
    """DP's lighter shade: each channel × 1.2 in float32, capped at 255, rounded to an int (the recorded
    frames' block interior is (143, 163, 184) from LightSlateGray (119, 136, 153))."""
    scaled = np.minimum(np.float32(1.2) * np.asarray(color, dtype=np.float32), np.float32(255.0))
    return (round(float(scaled[0])), round(float(scaled[1])), round(float(scaled[2])))


def shape_color(shape: Any) -> Color:
    """The RGB colour gym-pusht gave a pymunk shape (its `color` attribute, a pygame Color)."""
    color = getattr(shape, "color", None)
    if color is None:
        raise ScorePolicyError("Push-T renderer: a shape has no colour; is this gym-pusht's PushTEnv?")
    return (int(color[0]), int(color[1]), int(color[2]))


def draw_fat_segment(
    surface: Any, a: Sequence[float], b: Sequence[float], radius: float, color: Color
) -> None:
    """A segment of half-width `radius` as DP draws it: a line, a quadrilateral and two end discs."""
    import pygame

    p1, p2 = _px(a[0], a[1]), _px(b[0], b[1])
    width = round(max(1.0, radius * 2))
    pygame.draw.lines(surface, color, False, [p1, p2], width)
    if width <= 2:
        return
    ox, oy = abs(p2[1] - p1[1]), abs(p2[0] - p1[0])
    if ox == 0 and oy == 0:
        return
    scale = radius / (ox * ox + oy * oy) ** 0.5
    ox, oy = round(ox * scale), round(oy * scale)
    quad = [
        (p1[0] - ox, p1[1] - oy),
        (p1[0] + ox, p1[1] + oy),
        (p2[0] + ox, p2[1] + oy),
        (p2[0] - ox, p2[1] - oy),
    ]
    pygame.draw.polygon(surface, color, quad)
    pygame.draw.circle(surface, color, p1, round(radius))
    pygame.draw.circle(surface, color, p2, round(radius))


def draw_polygon(surface: Any, vertices: Sequence[tuple[float, float]], color: Color) -> None:
    """A filled polygon (lighter shade) with a fat outline in `color`, as DP draws the T block."""
    import pygame

    points = [_px(x, y) for x, y in vertices]
    pygame.draw.polygon(surface, light_color(color), [*points, points[0]])
    for i, a in enumerate(vertices):
        draw_fat_segment(surface, a, vertices[(i + 1) % len(vertices)], _POLY_OUTLINE_RADIUS, color)


def draw_disc(surface: Any, centre: tuple[float, float], radius: float, color: Color) -> None:
    """A disc in `color` with a lighter disc of radius − 4 on it, as DP draws the agent."""
    import pygame

    p = _px(centre[0], centre[1])
    pygame.draw.circle(surface, color, p, round(radius), 0)
    pygame.draw.circle(surface, light_color(color), p, round(radius - 4), 0)


class PushTRenderer:
    """Frames (size, size, 3) uint8 RGB of a gym-pusht `PushTEnv` as DP recorded them.

    `env` is the unwrapped PushTEnv; it may be reset (a new pymunk space each time): the renderer reads the
    current space at every frame and caches only what never moves (background with the goal, walls).
    """

    def __init__(self, env: Any, size: int = 96) -> None:
        if size < 1:
            raise ScorePolicyError(f"Push-T renderer: frame size must be ≥ 1 px, got {size}")
        self.env = env
        self.size = size
        self._key: tuple[float, ...] | None = None
        self._background: Any = None
        self._walls: Any = None
        self._canvas: Any = None
        self._rgb_index: list[int] = []

    def frame(self) -> np.ndarray:
        """The current scene as a (size, size, 3) uint8 RGB array."""
        import cv2

        canvas = self._draw()
        pitch = canvas.get_pitch()
        pixels = np.frombuffer(canvas.get_buffer(), dtype=np.uint8).reshape(CANVAS_PX, pitch // 4, 4)
        small = cv2.resize(pixels[:, :CANVAS_PX], (self.size, self.size), interpolation=cv2.INTER_LINEAR)
        return np.ascontiguousarray(small[..., self._rgb_index])

    def _draw(self) -> Any:
        """The 512-px canvas of the current state (a surface reused from frame to frame)."""
        import pygame

        env = self.env
        self._ensure_cache()
        canvas = self._canvas
        canvas.blit(self._background, (0, 0))
        for shape in env._block_shapes:
            body = shape.body
            draw_polygon(
                canvas, [tuple(body.local_to_world(v)) for v in shape.get_vertices()], shape_color(shape)
            )
        for shape in env.agent.shapes:
            centre = env.agent.local_to_world(shape.offset)
            draw_disc(canvas, (centre[0], centre[1]), shape.radius, shape_color(shape))
        canvas.blit(self._walls, (0, 0))
        for a, b in _contact_segments(env.block):
            pygame.draw.aalines(canvas, CONTACT_COLOR, False, [_px(*a), _px(*b)])
        return canvas

    def _ensure_cache(self) -> None:
        """Build the background (white + goal T) and the wall overlay once per goal pose."""
        import pygame

        env = self.env
        key = tuple(float(v) for v in np.asarray(env.goal_pose, dtype=np.float64))
        if key == self._key:
            return
        self._canvas = pygame.Surface((CANVAS_PX, CANVAS_PX))
        masks = self._canvas.get_masks()[:3]
        shifts = {0xFF0000: 2, 0xFF00: 1, 0xFF: 0}
        if any(m not in shifts for m in masks):
            raise ScorePolicyError(f"Push-T renderer: unsupported pygame surface channel masks {masks}")
        self._rgb_index = [shifts[m] for m in masks]  # byte offsets of R, G, B (little-endian pixels)
        background = pygame.Surface((CANVAS_PX, CANVAS_PX))
        background.fill((255, 255, 255))
        goal = env.get_goal_pose_body(env.goal_pose)
        for shape in env._block_shapes:
            points = [_px(*goal.local_to_world(v)) for v in shape.get_vertices()]
            pygame.draw.polygon(background, _GOAL_COLOR, [*points, points[0]])
        walls = pygame.Surface((CANVAS_PX, CANVAS_PX))
        walls.fill((0, 0, 0))
        walls.set_colorkey((0, 0, 0))
        for shape in env.space.static_body.shapes:
            draw_fat_segment(walls, tuple(shape.a), tuple(shape.b), shape.radius, shape_color(shape))
        self._background, self._walls, self._key = background, walls, key


def _contact_segments(block: Any) -> list[tuple[tuple[float, float], tuple[float, float]]]:
    """chipmunk's drawn contact segments of every arbiter touching the block (agent and walls)."""
    segments: list[tuple[tuple[float, float], tuple[float, float]]] = []

    def collect(arbiter: Any) -> None:
        points = arbiter.contact_point_set
        nx, ny = points.normal.x * _CONTACT_OFFSET, points.normal.y * _CONTACT_OFFSET
        for p in points.points:
            a, b = p.point_a, p.point_b
            segments.append(((a.x - nx, a.y - ny), (b.x + nx, b.y + ny)))

    block.each_arbiter(collect)
    return segments

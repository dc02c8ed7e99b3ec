"""Rendering of the SafeNavigation arena: a top-down numpy image and a text summary."""
from __future__ import annotations

import math
from typing import Any

import numpy as np

SIZE = 256  # image side in pixels
COLOURS = {
    "floor": (235, 235, 235),
    "wall": (90, 90, 90),
    "hazard": (60, 80, 230),
    "vase": (0, 170, 170),
    "goal": (40, 200, 60),
    "robot": (220, 40, 40),
    "robot_in_hazard": (255, 150, 0),
    "heading": (20, 20, 20),
}


def render_arena(core: Any, i: int) -> np.ndarray:
    """Copy ``i`` of a :class:`~deploy_envs.topics.navigation.safe_navigation.SafeNavigationCore` as an ``(SIZE, SIZE, 3)`` uint8 image."""
    a = core.arena_size
    scale = (SIZE - 8) / (2 * a)  # 4 px wall on each side
    img = np.empty((SIZE, SIZE, 3), np.uint8)
    img[:] = COLOURS["wall"]
    img[4:-4, 4:-4] = COLOURS["floor"]
    ys, xs = np.mgrid[0:SIZE, 0:SIZE]
    # world (x, y) of each pixel centre; y points up
    wx = (xs + 0.5 - SIZE / 2) / scale
    wy = (SIZE / 2 - ys - 0.5) / scale

    def disc(centre, radius, colour, ring=False):
        d2 = (wx - centre[0]) ** 2 + (wy - centre[1]) ** 2
        mask = d2 <= radius**2
        if ring:
            mask &= d2 >= (radius - 2.0 / scale) ** 2
        img[mask] = colour

    disc(core.goal[i], core.goal_size, COLOURS["goal"], ring=True)
    disc(core.goal[i], 0.05, COLOURS["goal"])
    for h in core.hazards[i]:
        disc(h, core.hazard_size, COLOURS["hazard"])
    for v in core.vases[i]:
        disc(v, core.vase_size, COLOURS["vase"])
    inside = core.last_cost[i] > 0
    disc(core.pos[i], 0.08, COLOURS["robot_in_hazard" if inside else "robot"])
    # heading: a short line of dots from the centre
    th = core.heading[i]
    for s in np.linspace(0.0, 0.14, 12):
        x, y = core.pos[i] + s * np.array([math.cos(th), math.sin(th)])
        col = int(round(x * scale + SIZE / 2 - 0.5))
        row = int(round(SIZE / 2 - y * scale - 0.5))
        if 0 <= row < SIZE and 0 <= col < SIZE:
            img[max(row - 1, 0) : row + 1, max(col - 1, 0) : col + 1] = COLOURS["heading"]
    return img


def render_ansi(core: Any, i: int) -> str:
    """A one-screen text summary of copy ``i``."""
    x, y = core.pos[i]
    gx, gy = core.goal[i]
    edge = core._hazard_edge(np.array([i]))[0]
    return (
        f"SafeNavigation level {core.level} | step {core.t[i]}/{core.max_steps}\n"
        f"robot ({x:+.2f}, {y:+.2f}) heading {math.degrees(core.heading[i]):+.0f} deg speed {core.speed[i]:.3f}\n"
        f"goal ({gx:+.2f}, {gy:+.2f}) distance {core.goal_dist[i]:.2f} | goals reached {core.goals_reached[i]}\n"
        f"hazards {core.num_hazards} (nearest edge {edge:+.2f}) | vases {core.num_vases}\n"
        f"cost this step {core.last_cost[i]:.0f} | episode cost {core.episode_cost[i]:.0f} / limit {core.cost_limit:g}\n"
    )

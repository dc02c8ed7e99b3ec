"""``deploy_envs/SafeNavigation-v0``: reach goals on a plane without stepping into hazards (a constrained MDP)."""
from __future__ import annotations

import math
from typing import Any

import numpy as np
from gymnasium import spaces

from deploy_envs.core.batched import BatchedCore
from deploy_envs.core.validation import Arg, check_choice, check_number, check_positive
from deploy_envs.core.spaces import flat_box
from deploy_envs.topics.navigation.rendering import render_ansi, render_arena

LEVELS = (0, 1, 2)

#: per level: arena half-size, hazards, vases, whether vases cost, hazard speed (per step).
#: Counts and sizes of Safety-Gymnasium's PointGoal0/1/2 (Ji et al. 2023, "Safety-Gymnasium",
#: arXiv 2310.12567; Ray et al. 2019, "Benchmarking Safe Exploration in Deep RL"); the moving
#: hazards of level 2 are this suite's addition (issue 5: "many and moving").
LEVEL_DEFAULTS: dict[int, dict[str, Any]] = {
    0: {"arena_size": 1.0, "num_hazards": 0, "num_vases": 0, "constrain_vases": False, "hazard_speed": 0.0},
    1: {"arena_size": 1.5, "num_hazards": 8, "num_vases": 1, "constrain_vases": False, "hazard_speed": 0.0},
    2: {"arena_size": 2.0, "num_hazards": 10, "num_vases": 10, "constrain_vases": True, "hazard_speed": 0.01},
}

# point-robot dynamics, per step: v <- DAMPING * v + ACCEL * a0; heading += TURN * a1
DAMPING = 0.8
ACCEL = 0.01
V_MAX = ACCEL / (1.0 - DAMPING)  # 0.05 per step: crossing a 3x3 arena takes about 60 steps
TURN = 0.3  # rad per step at full turn
VASE_CONTACT = 0.05  # extra contact distance of the robot body with a vase


#: the lidar's bin offsets: a reading goes to its bin and to the next and previous ones
_BIN_SHIFTS = np.array([0, 1, -1], np.int64)[:, None, None]


class SafeNavigationCore(BatchedCore):
    """## Description

    A point robot on a square plane drives to a goal; when it reaches the goal a new one
    appears, so the agent collects as many goals as it can in an episode. Hazards (circles
    of radius ``hazard_size``) are scattered on the floor: the robot can drive through them,
    but each step it spends inside one costs 1. The task is a constrained MDP (Altman 1999):
    maximise the return while keeping the expected episode cost under ``cost_limit``.
    It follows Safety-Gymnasium's ``SafetyPointGoal`` tasks (Ray et al. 2019; Ji et al. 2023)
    in observation layout, reward and cost conventions, without MuJoCo: the physics is a
    damped unicycle in numpy, batched over copies, and the arena has walls.

    Levels (``level``), as in Safety-Gymnasium: 0 - no hazards, arena [-1, 1]^2; 1 - 8
    hazards of radius 0.2 and 1 vase (no cost), arena [-1.5, 1.5]^2; 2 - 10 hazards and 10
    vases that cost on contact, arena [-2, 2]^2, and here the hazards also move (they drift
    at ``hazard_speed`` per step and bounce off the walls).

    ## Action Space

    ``Box(-1, 1, (2,), float32)``: forward force and turn. The forward speed follows
    ``v <- 0.8 v + 0.01 a[0]`` (top speed 0.05 per step, backwards allowed) and the heading
    turns by ``0.3 a[1]`` radians per step. Walls stop the robot.

    ## Observation Space

    A flat ``Box`` of float32 (slices in ``core.obs_slices``), egocentric as in
    Safety-Gymnasium:

    | part | size | range | content |
    |---|---|---|---|
    | ``velocity`` | 1 | [-1, 1] | forward speed / top speed |
    | ``gyro`` | 1 | [-1, 1] | last turn rate / maximum turn rate |
    | ``goal_lidar`` | ``lidar_bins`` | [0, 1] | lidar ring of the goal |
    | ``hazards_lidar`` | ``lidar_bins`` | [0, 1] | lidar ring of the hazards |
    | ``vases_lidar`` | ``lidar_bins`` | [0, 1] | lidar ring of the vases |

    Bin ``k`` of a ring covers the angles ``[k, k+1) * 2 pi / lidar_bins`` counter-clockwise
    from the robot's heading; it reads ``max(0, lidar_max_dist - d) / lidar_max_dist`` for the
    nearest object centre at distance ``d`` in it, and the neighbouring bins get the reading
    weighted by where the object falls in its bin (Safety-Gymnasium's ``lidar_alias``). All
    rings are present at every level (zeros when there is no such object), so one policy
    can be evaluated across levels.

    ## Rewards

    ``reward_distance * (previous distance to goal - distance to goal)`` every step plus
    ``reward_goal`` (default 1.0) when the robot comes within ``goal_size`` (0.3) of the goal,
    as in Safety-Gymnasium's goal task. By default there is no reward or penalty for
    hazards: the cost is a separate signal. ``cost_penalty > 0`` subtracts
    ``cost_penalty * cost`` from every step's reward (a fixed-multiplier penalty, the
    scalarised objective that a Lagrangian method tunes its multiplier for).

    ## Cost

    ``info["cost"]`` is 1.0 on each step that ends with the robot inside a hazard (or, where
    vases are constrained, touching a vase), else 0.0: the indicator cost of
    Safety-Gymnasium and OmniSafe. ``info["episode_cost"]`` is its sum so far;
    safe-RL algorithms compare the mean episode cost with ``cost_limit``.

    ## Starting State

    Hazards, vases, goal and robot are placed uniformly in the arena (away from the walls),
    by rejection sampling so that no two overlap (hazards keep ``hazard_size`` apart, the
    robot and goal start outside every hazard); the heading is uniform and the robot is
    at rest. A new goal appears in the same way away from the robot and hazards.

    ## Episode End

    No termination; truncation after ``max_steps`` steps (default 1000, as in
    Safety-Gymnasium).

    ## Info

    ``cost`` (0/1 this step), ``episode_cost``, ``cost_limit``, ``cost_limit_exceeded``
    (``episode_cost > cost_limit``), ``goals_reached``, ``goal_distance``, ``hazard_distance``
    (distance to the nearest hazard edge, negative inside; ``lidar_max_dist`` without
    hazards).

    ## Arguments

    * ``level``: 0, 1 (default) or 2; the defaults below follow it.
    * ``num_hazards``, ``hazard_size`` (default 0.2), ``num_vases``, ``vase_size`` (0.1),
      ``constrain_vases``, ``hazard_speed``, ``arena_size`` (half-width of the arena).
    * ``goal_size`` (0.3), ``reward_distance`` (1.0), ``reward_goal`` (1.0).
    * ``cost_penalty``: reward subtracted per unit of cost, >= 0 (default 0: cost and
      reward kept apart, as in Safety-Gymnasium).
    * ``cost_limit``: the episode cost budget, >= 0 (default 25, OmniSafe's benchmark value
      for 1000-step episodes); reported in ``info``, not enforced.
    * ``max_steps``: episode length (default 1000). A short-horizon variant (e.g. 200 steps
      with ``cost_limit=5``) keeps the per-step budget and trains much faster.
    * ``lidar_bins`` (16), ``lidar_max_dist`` (3.0).

    ## Version History

    * v0: initial release (``cost_penalty`` added within v0, default 0: unchanged behaviour).
    """

    arguments = {
        name: Arg(low=0.0, high=100.0, low_inclusive=False, why="object sizes are lengths in an arena a few units wide")
        for name in ("arena_size", "hazard_size", "vase_size", "goal_size")
    }

    metadata = {"render_modes": ["rgb_array", "ansi"], "render_fps": 30}

    def __init__(
        self,
        num_envs: int = 1,
        render_mode: str | None = None,
        *,
        level: int = 1,
        num_hazards: int | None = None,
        hazard_size: float = 0.2,
        num_vases: int | None = None,
        vase_size: float = 0.1,
        constrain_vases: bool | None = None,
        hazard_speed: float | None = None,
        arena_size: float | None = None,
        goal_size: float = 0.3,
        reward_distance: float = 1.0,
        reward_goal: float = 1.0,
        cost_penalty: float = 0.0,
        cost_limit: float = 25.0,
        max_steps: int = 1000,
        lidar_bins: int = 16,
        lidar_max_dist: float = 3.0,
    ) -> None:
        super().__init__(num_envs, render_mode)
        if isinstance(level, bool) or level not in LEVELS:
            raise ValueError(f"level={level!r} is not allowed; choose one of 0, 1, 2 (Safety-Gymnasium's levels)")
        self.level = int(level)
        d = LEVEL_DEFAULTS[self.level]
        self.arena_size = check_positive("arena_size", d["arena_size"] if arena_size is None else arena_size)
        self.num_hazards = check_number("num_hazards", d["num_hazards"] if num_hazards is None else num_hazards, low=0, high=100, integer=True)
        self.hazard_size = check_positive("hazard_size", hazard_size)
        self.num_vases = check_number("num_vases", d["num_vases"] if num_vases is None else num_vases, low=0, high=100, integer=True)
        self.vase_size = check_positive("vase_size", vase_size)
        cv = d["constrain_vases"] if constrain_vases is None else constrain_vases
        self.constrain_vases = bool(check_choice("constrain_vases", cv, (True, False)))
        self.hazard_speed = check_number("hazard_speed", d["hazard_speed"] if hazard_speed is None else hazard_speed, low=0.0, high=0.2)
        self.goal_size = check_positive("goal_size", goal_size)
        self.reward_distance = check_number("reward_distance", reward_distance)
        self.reward_goal = check_number("reward_goal", reward_goal)
        self.cost_penalty = check_number("cost_penalty", cost_penalty, low=0.0)
        self.cost_limit = check_number("cost_limit", cost_limit, low=0.0)
        self.max_steps = check_positive("max_steps", max_steps, integer=True)
        self.lidar_bins = check_number("lidar_bins", lidar_bins, low=3, high=256, integer=True)
        self.lidar_max_dist = check_positive("lidar_max_dist", lidar_max_dist)
        self.margin = max(0.1, self.hazard_size) if self.num_hazards else 0.1
        free = (2 * (self.arena_size - self.margin)) ** 2
        if free <= 0:
            raise ValueError(f"arena_size={self.arena_size!r} is too small for hazard_size={self.hazard_size!r}; it must exceed {self.margin}")
        covered = self.num_hazards * math.pi * self.hazard_size**2 + self.num_vases * math.pi * self.vase_size**2
        if covered > 0.4 * free:
            raise ValueError(
                f"num_hazards={self.num_hazards}, hazard_size={self.hazard_size}, num_vases={self.num_vases}, vase_size={self.vase_size} cover "
                f"{covered:.2f} of the free arena area {free:.2f}; allowed is at most 40% (use fewer or smaller objects, or a larger arena_size={self.arena_size})"
            )

        B = self.lidar_bins
        parts = [("velocity", 1, -1.0, 1.0), ("gyro", 1, -1.0, 1.0), ("goal_lidar", B, 0.0, 1.0), ("hazards_lidar", B, 0.0, 1.0), ("vases_lidar", B, 0.0, 1.0)]
        self.single_observation_space, self.obs_slices = flat_box(parts)
        self.obs_dim = self.single_observation_space.shape[0]
        self.single_action_space = spaces.Box(-1.0, 1.0, (2,), dtype=np.float32)

        n, H, V = self.num_envs, self.num_hazards, self.num_vases
        self.pos = np.zeros((n, 2))
        self.heading = np.zeros(n)
        self.speed = np.zeros(n)
        self.turn = np.zeros(n)
        # goal, hazards and vases are views of one array: the lidar reads them in one piece
        self._objects = np.zeros((n, 1 + H + V, 2))
        self.goal = self._objects[:, 0]
        self.hazards = self._objects[:, 1 : 1 + H]
        self.hazard_vel = np.zeros((n, H, 2))
        self.vases = self._objects[:, 1 + H :]
        self.t = np.zeros(n, np.int64)
        self.episode_cost = np.zeros(n)
        self.goals_reached = np.zeros(n, np.int64)
        self.last_cost = np.zeros(n)
        self.goal_dist = np.zeros(n)
        self.hazard_edge = np.zeros(n)
        self._ring = np.repeat([0, 1, 2], [1, H, V])
        self._lidar_base: dict[int, np.ndarray] = {}  # batch size -> flat offset of each object's ring

    # ------------------------------------------------------------ placement
    def _sample_point(self, rng: np.random.Generator, taken: list[tuple[np.ndarray, float]], keepout: float) -> np.ndarray:
        """A uniform point of the arena (minus a margin) at least ``keepout + r`` from every ``(centre, r)`` in ``taken``."""
        lim = self.arena_size - self.margin
        cand = None
        for _ in range(20):
            cand = rng.uniform(-lim, lim, size=(32, 2))
            ok = np.ones(32, dtype=bool)
            for c, r in taken:
                ok &= np.hypot(*(cand - c).T) >= keepout + r
            if ok.any():
                return cand[np.argmax(ok)]
        return cand[0]  # crowded arena: accept an overlap rather than loop forever

    def _place_goal(self, i: int) -> None:
        taken = [(h, self.hazard_size) for h in self.hazards[i]] + [(v, self.vase_size) for v in self.vases[i]]
        taken.append((self.pos[i], 0.5))
        self.goal[i] = self._sample_point(self.rngs[i], taken, self.goal_size * 0.5)

    # ------------------------------------------------------------------ API
    def reset_indices(self, idx, options=None):
        for i in idx:  # per-copy draws, each from its own generator
            rng = self.rngs[i]
            taken: list[tuple[np.ndarray, float]] = []
            for k in range(self.num_hazards):
                self.hazards[i, k] = self._sample_point(rng, taken, self.hazard_size)
                taken.append((self.hazards[i, k], self.hazard_size))
            for k in range(self.num_vases):
                self.vases[i, k] = self._sample_point(rng, taken, self.vase_size)
                taken.append((self.vases[i, k], self.vase_size))
            self.pos[i] = self._sample_point(rng, taken, 0.1)
            self.heading[i] = rng.uniform(-math.pi, math.pi)
            if self.num_hazards and self.hazard_speed > 0:
                ang = rng.uniform(-math.pi, math.pi, size=self.num_hazards)
                self.hazard_vel[i] = self.hazard_speed * np.stack([np.cos(ang), np.sin(ang)], -1)
            self._place_goal(i)
        self.speed[idx] = 0.0
        self.turn[idx] = 0.0
        self.t[idx] = 0
        self.episode_cost[idx] = 0.0
        self.goals_reached[idx] = 0
        self.last_cost[idx] = 0.0
        self.goal_dist[idx] = np.hypot(*(self.goal[idx] - self.pos[idx]).T)
        self.hazard_edge[idx] = self._hazard_edge(idx)
        return self._observe(idx), self._info(idx)

    def step_indices(self, idx, actions):
        actions = np.asarray(actions, dtype=np.float64)
        if len(idx) == 1:
            return self._step_one(int(idx[0]), actions)
        lim = self.arena_size
        # robot: damped forward speed, direct turn rate, walls stop the motion
        speed = DAMPING * self.speed[idx] + ACCEL * actions[:, 0]
        heading = self.heading[idx] + TURN * actions[:, 1]
        heading = (heading + math.pi) % (2 * math.pi) - math.pi
        pos = self.pos[idx]
        pos[:, 0] += speed * np.cos(heading)
        pos[:, 1] += speed * np.sin(heading)
        clipped = np.minimum(np.maximum(pos, -lim), lim)
        hit = (clipped != pos).any(-1)  # a wall stopped the robot
        pos = clipped
        speed = np.where(hit, 0.0, speed)
        self.pos[idx], self.heading[idx], self.speed[idx], self.turn[idx] = pos, heading, speed, actions[:, 1]
        if self.num_hazards and self.hazard_speed > 0:  # moving hazards bounce off the walls
            h = self.hazards[idx] + self.hazard_vel[idx]
            hl = lim - self.hazard_size
            out = np.abs(h) > hl
            vel = np.where(out, -self.hazard_vel[idx], self.hazard_vel[idx])
            self.hazards[idx] = np.minimum(np.maximum(h, -hl), hl)
            self.hazard_vel[idx] = vel
        # reward: progress toward the goal, bonus on reaching it (then a new goal appears)
        dist = np.hypot(*(self.goal[idx] - pos).T)
        reward = self.reward_distance * (self.goal_dist[idx] - dist)
        reached = dist <= self.goal_size
        reward = reward + self.reward_goal * reached
        if reached.any():
            for j in np.flatnonzero(reached):
                self._place_goal(idx[j])
            r_idx = idx[reached]
            dist[reached] = np.hypot(*(self.goal[r_idx] - self.pos[r_idx]).T)
            self.goals_reached[r_idx] += 1
        self.goal_dist[idx] = dist
        obs = self._observe(idx)
        # cost: indicator of being inside a hazard (or touching a constrained vase); the lidar
        # has just measured the distance to every hazard centre
        if self.num_hazards:
            edge = self._object_dist[:, 1 : 1 + self.num_hazards].min(-1) - self.hazard_size
        else:
            edge = self._hazard_edge(idx)
        self.hazard_edge[idx] = edge
        cost = edge <= 0.0
        if self.num_vases and self.constrain_vases:
            vd = np.hypot(*(self.vases[idx] - pos[:, None, :]).transpose(2, 0, 1)).min(-1)
            cost |= vd <= self.vase_size + VASE_CONTACT
        cost = cost.astype(np.float64)
        if self.cost_penalty:
            reward = reward - self.cost_penalty * cost
        self.last_cost[idx] = cost
        self.episode_cost[idx] += cost
        self.t[idx] += 1
        truncated = self.t[idx] >= self.max_steps
        terminated = np.zeros(len(idx), dtype=bool)
        return obs, reward, terminated, truncated, self._info(idx)

    def _step_one(self, i: int, actions: np.ndarray):
        """:meth:`step_indices` of the one copy ``i`` (the single env): the same arithmetic, in the same
        order, on numpy float64 scalars instead of length-1 arrays (the lidar stays batched over the
        objects); the single-vs-vector tests hold the two to the last bit."""
        a_speed, a_turn = actions[0, 0], actions[0, 1]
        lim = self.arena_size
        speed = DAMPING * self.speed[i] + ACCEL * a_speed
        heading = self.heading[i] + TURN * a_turn
        heading = (heading + math.pi) % (2 * math.pi) - math.pi
        x = self.pos[i, 0] + speed * np.cos(heading)
        y = self.pos[i, 1] + speed * np.sin(heading)
        cx, cy = min(max(x, -lim), lim), min(max(y, -lim), lim)
        if cx != x or cy != y:  # a wall stopped the robot
            speed = 0.0
        self.pos[i, 0], self.pos[i, 1], self.heading[i], self.speed[i], self.turn[i] = cx, cy, heading, speed, a_turn
        if self.num_hazards and self.hazard_speed > 0:  # moving hazards bounce off the walls
            h = self.hazards[i] + self.hazard_vel[i]
            hl = lim - self.hazard_size
            self.hazard_vel[i] = np.where(np.abs(h) > hl, -self.hazard_vel[i], self.hazard_vel[i])
            self.hazards[i] = np.minimum(np.maximum(h, -hl), hl)
        dist = np.hypot(self.goal[i, 0] - cx, self.goal[i, 1] - cy)
        reward = self.reward_distance * (self.goal_dist[i] - dist)
        reached = dist <= self.goal_size
        reward = reward + self.reward_goal * reached
        if reached:
            self._place_goal(i)
            dist = np.hypot(self.goal[i, 0] - self.pos[i, 0], self.goal[i, 1] - self.pos[i, 1])
            self.goals_reached[i] += 1
        self.goal_dist[i] = dist
        idx = np.array([i])
        obs = self._observe(idx)
        if self.num_hazards:
            edge = self._object_dist[0, 1 : 1 + self.num_hazards].min() - self.hazard_size
        else:
            edge = self._hazard_edge(idx)[0]
        self.hazard_edge[i] = edge
        cost = edge <= 0.0
        if self.num_vases and self.constrain_vases:
            cost = cost or np.hypot(self.vases[i, :, 0] - cx, self.vases[i, :, 1] - cy).min() <= self.vase_size + VASE_CONTACT
        cost = 1.0 if cost else 0.0
        if self.cost_penalty:
            reward = reward - self.cost_penalty * cost
        self.last_cost[i] = cost
        self.episode_cost[i] += cost
        self.t[i] += 1
        truncated = np.array([self.t[i] >= self.max_steps])
        return obs, np.array([reward], dtype=np.float64), np.zeros(1, dtype=bool), truncated, self._info(idx)

    # -------------------------------------------------------------- helpers
    def _hazard_edge(self, idx) -> np.ndarray:
        """Distance from the robot to the nearest hazard's edge (negative inside)."""
        if not self.num_hazards:
            return np.full(len(idx), self.lidar_max_dist)
        rel = self.hazards[idx] - self.pos[idx][:, None, :]
        return np.sqrt(rel[..., 0] ** 2 + rel[..., 1] ** 2).min(-1) - self.hazard_size

    def _info(self, idx) -> dict[str, np.ndarray]:
        ep = self.episode_cost[idx].copy()
        return {
            "cost": self.last_cost[idx].copy(),
            "episode_cost": ep,
            "cost_limit": np.full(len(idx), self.cost_limit) if len(idx) != 1 else np.array([self.cost_limit]),
            "cost_limit_exceeded": ep > self.cost_limit,
            "goals_reached": self.goals_reached[idx].copy(),
            "goal_distance": self.goal_dist[idx].copy(),
            "hazard_distance": self.hazard_edge[idx].copy(),
        }

    def _lidar(self, idx, objects: np.ndarray, ring: np.ndarray, rings: int) -> np.ndarray:
        """Egocentric lidar rings ``(k, rings, bins)``: object ``j`` of ``objects`` ``(k, m, 2)`` shows on ring ``ring[j]``.

        Safety-Gymnasium's aliased lidar: each object's reading goes to its bin and, weighted
        by its position in the bin, to the two neighbours; a bin keeps the largest reading.
        All rings of all copies are filled with one ``np.maximum.at``.
        """
        k, m = objects.shape[:2]
        B = self.lidar_bins
        out = np.zeros(k * rings * B, np.float64)
        if m == 0:
            return out.reshape(k, rings, B)
        rel = objects - self.pos[idx][:, None, :]
        dist = np.sqrt(rel[..., 0] ** 2 + rel[..., 1] ** 2)
        self._object_dist = dist  # (k, m): read by step_indices for the hazard cost
        ang = (np.arctan2(rel[..., 1], rel[..., 0]) - self.heading[idx][:, None]) % (2 * math.pi)
        b = ang * (B / (2 * math.pi))
        lo = np.minimum(np.floor(b).astype(np.int64), B - 1)
        alias = b - lo
        sensor = np.maximum(0.0, self.lidar_max_dist - dist) / self.lidar_max_dist
        base = self._lidar_base.get(k) if rings == 3 and ring is self._ring else None
        if base is None:
            base = (np.arange(k)[:, None] * rings + ring[None, :]) * B
            if rings == 3 and ring is self._ring:
                self._lidar_base[k] = base
        flat = (lo + _BIN_SHIFTS) % B  # (3, k, m): the bin, the next one and the one before
        flat += base
        vals = np.empty((3, k, m))
        vals[0] = sensor
        np.multiply(alias, sensor, out=vals[1])
        np.multiply(1 - alias, sensor, out=vals[2])
        np.maximum.at(out, flat.ravel(), vals.ravel())
        return out.reshape(k, rings, B)

    def _observe(self, idx) -> np.ndarray:
        k = len(idx)
        obs = np.empty((k, self.obs_dim), np.float32)
        obs[:, 0] = np.minimum(np.maximum(self.speed[idx] / V_MAX, -1), 1)  # velocity
        obs[:, 1] = np.minimum(np.maximum(self.turn[idx], -1), 1)  # gyro
        lidar = self._lidar(idx, self._objects[idx], self._ring, 3)  # goal, hazards, vases: contiguous in the observation
        obs[:, self.obs_slices["goal_lidar"].start :] = lidar.reshape(k, -1)
        return obs

    # ------------------------------------------------------------- rendering
    def render_rgb(self, i: int) -> np.ndarray:
        return render_arena(self, i)

    def render_ansi(self, i: int) -> str:
        return render_ansi(self, i)

"""Reference attackers for ``deploy_envs/Evasion-v0``.

Every agent here attacks only through the env's own API: it reads the env's
configuration (``epsilon``, ``norm``, ``step_size``, ``action_mode``,
``threat_model``, ``max_queries`` and the observation layout ``obs_slices``) from
``env.unwrapped.core`` in :meth:`~EvasionAgent.setup`, then turns observations
into actions for the whole batch at once. None of them calls the victim model:
the white-box agents use the gradient the env puts in the observation, the
score-based ones the softmax scores in its ``feedback`` part.

| name | threat model | action mode | algorithm |
|---|---|---|---|
| ``noise`` | any | any | uniform random perturbations in the ball |
| ``fgsm`` | ``white_box`` | any | one step of size epsilon along the gradient sign (Goodfellow et al. 2015) |
| ``pgd`` | ``white_box`` | any | projected gradient ascent (Madry et al. 2018) |
| ``eot_pgd`` | ``white_box`` + ``transforms`` | any | PGD on the gradient averaged over transformed views (Athalye et al. 2018) |
| ``square`` | ``scores``, ``white_box`` | ``set`` | Square attack, linf (Andriushchenko et al. 2020) |
| ``simba`` | ``scores``, ``white_box`` | ``set`` | SimBA, pixel basis (Guo et al. 2019) |

Actions are in units of the radius: in ``"step"`` mode the env moves the
perturbation by ``step_size * epsilon * action``, in ``"set"`` mode it sets it to
``epsilon * action``, and projects onto the ball and the pixel range [0, 1] in both.

A new episode in copy ``i`` is recognised by ``episode_start[i]`` or by a full
budget in the observation (no query made yet), so the stateful agents also work
under ``NEXT_STEP`` autoreset, where the step that resets a copy ignores its action.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from deploy_envs.core.agents import register_baseline
from deploy_envs.core.agents import Agent
from deploy_envs.core.validation import check_number, check_positive

ENV_ID = "deploy_envs/Evasion-v0"
_TINY = np.float32(1e-38)


@dataclass(frozen=True)
class EvasionConfig:
    """What an attacker may know of an ``Evasion-v0`` env: its configuration, not its victim."""

    num_envs: int
    epsilon: float
    norm: str
    step_size: float
    action_mode: str
    threat_model: str
    targeted: bool
    max_queries: int
    image_shape: tuple[int, int, int]
    slices: dict[str, slice]

    @property
    def d(self) -> int:
        return int(np.prod(self.image_shape))

    @classmethod
    def from_env(cls, env: Any) -> EvasionConfig:
        core = getattr(env.unwrapped, "core", None)
        needed = ("obs_slices", "epsilon", "norm", "step_size", "action_mode", "threat_model", "max_queries", "victim")
        if core is None or any(not hasattr(core, a) for a in needed):
            raise ValueError(f"env={env!r} is not an {ENV_ID} env: its unwrapped.core lacks {', '.join(needed)}")
        return cls(
            num_envs=int(core.num_envs),
            epsilon=float(core.epsilon),
            norm=core.norm,
            step_size=float(core.step_size),
            action_mode=core.action_mode,
            threat_model=core.threat_model,
            targeted=bool(core.targeted),
            max_queries=int(core.max_queries),
            image_shape=tuple(core.victim.image_shape),
            slices=dict(core.obs_slices),
        )


# ------------------------------------------------------------------ helpers
def unit_direction(g: np.ndarray, norm: str) -> np.ndarray:
    """Steepest-ascent direction of ``g`` (rows) with unit ``norm``: ``sign(g)`` or ``g / ||g||_2``.

    Both are valid actions: every entry of ``g / ||g||_2`` is at most 1 in magnitude.
    A zero gradient gives a zero direction.
    """
    if norm == "linf":
        return np.sign(g)
    n = np.sqrt(np.einsum("ij,ij->i", g, g))[:, None]
    return np.where(n > 0, g / np.maximum(n, 1e-30), 0.0)


def project_unit(a: np.ndarray, norm: str) -> np.ndarray:
    """Project rows of ``a`` onto the unit ``norm`` ball (a perturbation in units of epsilon)."""
    if norm == "linf":
        return np.clip(a, -1.0, 1.0)
    n = np.sqrt(np.einsum("ij,ij->i", a, a))[:, None]
    return a * np.minimum(1.0, 1.0 / np.maximum(n, 1e-30))


def margin_loss(scores: np.ndarray, label_onehot: np.ndarray, targeted: bool) -> np.ndarray:
    """Margin loss on log-probabilities, positive until the attack succeeds (to be minimized).

    Untargeted: ``log p_y - max_{k != y} log p_k``; targeted: ``max_{k != t} log p_k - log p_t``
    (equal to the logit margins, since softmax shifts all log-probabilities alike).
    """
    logp = np.log(np.maximum(scores, _TINY))
    own = (logp * label_onehot).sum(1)
    other = np.where(label_onehot > 0.5, -np.inf, logp).max(1)
    return other - own if targeted else own - other


# --------------------------------------------------------------- base class
class EvasionAgent(Agent):
    """Base class: reads the env configuration, checks it, and tracks episode starts.

    Subclasses set the allowed ``threat_models``/``action_modes``/``norms``, and
    implement :meth:`begin` (new episodes in copies ``idx``) and :meth:`propose`
    (the actions of all copies).
    """

    threat_models: tuple[str, ...] = ("white_box", "scores", "decision")
    action_modes: tuple[str, ...] = ("step", "set")
    norms: tuple[str, ...] = ("linf", "l2")

    def __init__(self, seed: int | None = None) -> None:
        self.seed = seed

    def setup(self, env: Any) -> None:
        cfg = self.cfg = EvasionConfig.from_env(env)
        for arg, value, allowed in (
            ("threat_model", cfg.threat_model, self.threat_models),
            ("action_mode", cfg.action_mode, self.action_modes),
            ("norm", cfg.norm, self.norms),
        ):
            if value not in allowed:
                raise ValueError(
                    f"{type(self).__name__} needs {arg} in {', '.join(map(repr, allowed))}, but the env has "
                    f"{arg}={value!r}{self.hint(arg)}"
                )
        self.rng = np.random.default_rng(self.seed)
        self.init_state(cfg.num_envs)

    def hint(self, arg: str) -> str:
        """Extra advice appended to a configuration error about ``arg``."""
        return ""

    def init_state(self, n: int) -> None:
        """Allocate per-copy memory for ``n`` copies (nothing by default)."""

    def part(self, obs: np.ndarray, name: str) -> np.ndarray:
        return obs[:, self.cfg.slices[name]]

    def act(self, obs: np.ndarray, episode_start: np.ndarray) -> np.ndarray:
        single = np.ndim(obs) == 1
        obs = np.atleast_2d(np.asarray(obs, dtype=np.float32))
        start = np.broadcast_to(np.asarray(episode_start, dtype=bool), (len(obs),))
        start = start | (self.part(obs, "budget")[:, 0] >= 1.0)
        if start.any():
            self.begin(np.flatnonzero(start), obs[start])
        actions = np.clip(self.propose(obs, start), -1.0, 1.0).astype(np.float32)
        return actions[0] if single else actions

    def begin(self, idx: np.ndarray, obs: np.ndarray) -> None:
        """Reset the memory of copies ``idx``, whose observations ``obs`` start an episode."""

    def propose(self, obs: np.ndarray, start: np.ndarray) -> np.ndarray:
        raise NotImplementedError


# ------------------------------------------------------------------ agents
class NoiseAttack(EvasionAgent):
    """Random noise: the floor every attack must beat (seeded).

    In ``"set"`` mode each query tries a fresh perturbation drawn uniformly from the
    ball: ``action ~ U[-1, 1]^d`` for linf, uniform in the unit l2 ball for l2. In
    ``"step"`` mode the perturbation takes random steps: ``action`` is a random sign
    vector for linf, and a random sign vector divided by ``sqrt(d)`` for l2, so each
    step has norm ``step_size * epsilon`` like a PGD step.
    """

    name = "noise"

    def propose(self, obs, start):
        n, d = len(obs), self.cfg.d
        if self.cfg.action_mode == "step":
            a = self.rng.choice(np.array([-1.0, 1.0], np.float32), size=(n, d))
            return a if self.cfg.norm == "linf" else a / np.sqrt(d)
        if self.cfg.norm == "linf":
            return self.rng.uniform(-1.0, 1.0, size=(n, d))
        g = self.rng.standard_normal((n, d))
        radius = self.rng.uniform(size=(n, 1)) ** (1.0 / d)
        return unit_direction(g, "l2") * radius


class GradientAgent(EvasionAgent):
    """Base of the white-box agents: they read the ``gradient`` part of the observation."""

    threat_models = ("white_box",)

    def hint(self, arg):
        return " (only white_box observations carry the gradient)" if arg == "threat_model" else ""


class PGDAttack(GradientAgent):
    """Projected gradient descent (Madry et al. 2018) driven by the env's gradient.

    Each query moves along the ascent direction of the observed gradient: ``sign(g)``
    for linf, ``g / ||g||_2`` for l2. In ``"step"`` mode that is the action itself,
    since the env moves by ``step_size * epsilon * action``: the l2 step then has norm
    exactly ``step_size * epsilon`` (no entry of ``g / ||g||_2`` exceeds 1, so the
    action box never clips it), and the env's projection onto the ball and pixel
    range is PGD's. In ``"set"`` mode the agent adds ``step_size`` times that
    direction to the observed perturbation and projects onto the unit ball itself.
    With ``max_queries = T`` this is ``T``-step PGD with step ``step_size * epsilon``
    and no random start, stopped early on success.

    Needs ``threat_model="white_box"`` (the only threat model that shows gradients).
    """

    name = "pgd"

    def propose(self, obs, start):
        direction = unit_direction(self.part(obs, "gradient"), self.cfg.norm)
        if self.cfg.action_mode == "step":
            return direction
        return project_unit(self.part(obs, "delta") + self.cfg.step_size * direction, self.cfg.norm)


class EOTPGDAttack(PGDAttack):
    """EOT-PGD (Athalye, Engstrom, Ilyas & Kwok 2018): PGD on the expected loss over a
    distribution of transformations.

    The same update as ``pgd``, run in an env made with ``transforms`` (and the default
    ``eot_mode="attack"``): there the env's gradient is the average of the gradients over
    the ``eot_samples`` transformed views of each query, which is the EOT estimate of the
    gradient of the expected loss, and success is measured in expectation over fresh views.
    The agent refuses an env without transformations, where it would be plain PGD.
    """

    name = "eot_pgd"

    def setup(self, env: Any) -> None:
        super().setup(env)
        core = env.unwrapped.core
        if getattr(core, "eot_dist", None) is None or getattr(core, "eot_mode", None) != "attack":
            raise ValueError(
                "EOTPGDAttack needs an Evasion-v0 env with transforms set and eot_mode='attack' "
                f"(got transforms={getattr(core, 'eot_dist', None)!r}, eot_mode={getattr(core, 'eot_mode', None)!r}); "
                "without them use the 'pgd' baseline"
            )


class FGSMAttack(GradientAgent):
    """Fast gradient sign method (Goodfellow et al. 2015): one step of size epsilon.

    The step is taken along the ascent direction of the gradient at the *clean*
    input, remembered per copy from the episode's first observation: ``sign(g)``
    for linf, and for l2 the normalized gradient ``g / ||g||_2``, so the step has l2
    norm epsilon (its fast gradient method variant). In ``"set"`` mode one action
    does it (the perturbation is set to ``epsilon * action``). In ``"step"`` mode the
    env moves by ``step_size * epsilon * action`` per query, so the agent repeats the
    same action ``ceil(1 / step_size)`` times, which reaches the radius (the env
    projects the overshoot back onto the ball); after that it holds still. Per-step
    clipping to the pixel range can make the l2 step-mode result differ slightly from
    a single step clipped once.

    Needs ``threat_model="white_box"``.
    """

    name = "fgsm"

    def init_state(self, n):
        self.direction = np.zeros((n, self.cfg.d), np.float32)
        self.steps_taken = np.zeros(n, np.int64)
        self.steps_needed = max(1, math.ceil(1.0 / self.cfg.step_size - 1e-9))

    def begin(self, idx, obs):
        self.direction[idx] = unit_direction(self.part(obs, "gradient"), self.cfg.norm)
        self.steps_taken[idx] = 0

    def propose(self, obs, start):
        if self.cfg.action_mode == "set":
            return self.direction.copy()
        moving = self.steps_taken < self.steps_needed
        self.steps_taken += moving
        return self.direction * moving[:, None]


class SquareAttack(EvasionAgent):
    """Square attack, linf (Andriushchenko et al. 2020, "Square Attack: a query-efficient
    black-box adversarial attack via random search").

    Score-based random search run through the env in ``action_mode="set"``: the
    first query tries vertical stripes of +-epsilon (one random sign per column and
    channel); each later query changes one random square window of the best
    perturbation so far to +-epsilon (one random sign per channel; signs that would
    leave the input unchanged are redrawn, as in the paper). The window covers about a fraction ``p``
    of the pixels, with ``p`` halving from ``p_init`` on the paper's schedule,
    rescaled to the env's ``max_queries``. A proposal is kept when it lowers the
    margin loss computed from the observed softmax scores and the ``label`` part of
    the observation (:func:`margin_loss`). The env answers for the proposal made on
    the previous step, so the agent remembers that proposal until the answer comes.

    Needs ``action_mode="set"``, ``norm="linf"`` (use ``simba`` for l2) and a
    threat model that shows scores (``"scores"`` or ``"white_box"``).
    """

    name = "square"
    threat_models = ("scores", "white_box")
    action_modes = ("set",)
    norms = ("linf",)

    def __init__(self, p_init: float = 0.05, seed: int | None = None) -> None:
        super().__init__(seed)
        self.p_init = check_number("p_init", p_init, low=0.0, high=1.0, low_inclusive=False)

    def hint(self, arg):
        if arg == "norm":
            return "; for l2 use the 'simba' baseline"
        if arg == "action_mode":
            return " (the attack sets whole perturbations and rejects some: make the env with action_mode='set')"
        return " (the attack reads the softmax scores)"

    def init_state(self, n):
        d = self.cfg.d
        self.x0 = np.zeros((n, d), np.float32)
        self.best = np.zeros((n, d), np.float32)  # in units of epsilon, each entry +-1
        self.pending = np.zeros((n, d), np.float32)
        self.best_loss = np.full(n, np.inf)
        self.iteration = np.zeros(n, np.int64)

    def begin(self, idx, obs):
        c, h, w = self.cfg.image_shape
        self.x0[idx] = self.part(obs, "x")
        stripes = self.rng.choice(np.array([-1.0, 1.0], np.float32), size=(len(idx), c, 1, w))
        self.pending[idx] = np.broadcast_to(stripes, (len(idx), c, h, w)).reshape(len(idx), -1)
        self.best_loss[idx] = np.inf  # the stripes are accepted whatever their loss
        self.iteration[idx] = -1

    def side(self, iteration: np.ndarray) -> np.ndarray:
        """Square side for each copy's iteration (the paper's ``p_selection``, then ``sqrt(p * d / c)``)."""
        c, h, w = self.cfg.image_shape
        it = (iteration / self.cfg.max_queries * 10000).astype(np.int64)
        bounds = np.array([10, 50, 200, 500, 1000, 2000, 4000, 6000, 8000])
        halvings = np.where(it > 10000, 0, np.searchsorted(bounds, it, side="left"))  # bounds below it
        p = self.p_init / 2.0**halvings
        s = np.rint(np.sqrt(p * self.cfg.d / c)).astype(np.int64)
        return np.clip(s, 1, max(1, min(h, w) - 1))

    def propose(self, obs, start):
        answered = ~start
        if answered.any():
            loss = margin_loss(self.part(obs, "feedback"), self.part(obs, "label"), self.cfg.targeted)
            better = answered & (loss < self.best_loss)
            self.best[better] = self.pending[better]
            self.best_loss[better] = loss[better]
            self.iteration[answered] += 1
            idx = np.flatnonzero(answered)
            self.pending[idx] = self.window_update(idx)
        return self.pending.copy()

    def window_update(self, idx: np.ndarray) -> np.ndarray:
        c, h, w = self.cfg.image_shape
        m, eps = len(idx), self.cfg.epsilon
        s = self.side(self.iteration[idx])
        top = self.rng.integers(0, h - s + 1)
        left = self.rng.integers(0, w - s + 1)
        rows, cols = np.arange(h)[None, :], np.arange(w)[None, :]
        in_rows = (rows >= top[:, None]) & (rows < (top + s)[:, None])
        in_cols = (cols >= left[:, None]) & (cols < (left + s)[:, None])
        window = (in_rows[:, :, None] & in_cols[:, None, :])[:, None, :, :]  # (m, 1, h, w)
        best = self.best[idx].reshape(m, c, h, w)
        x0 = self.x0[idx].reshape(m, c, h, w)
        old = np.clip(x0 + eps * best, 0.0, 1.0)
        signs = self.rng.choice(np.array([-1.0, 1.0], np.float32), size=(m, c))
        todo = np.ones(m, bool)
        for attempt in range(10):  # as in the paper, resample windows that change nothing
            new = np.where(window, signs[:, :, None, None], best)
            same = (np.abs(np.clip(x0 + eps * new, 0.0, 1.0) - old) < 1e-7).all(axis=(1, 2, 3))
            todo = same
            if not todo.any():
                break
            if attempt < 9:
                signs[todo] = self.rng.choice(np.array([-1.0, 1.0], np.float32), size=(int(todo.sum()), c))
        signs[todo] = -signs[todo]  # flipping every channel always changes the window
        return np.where(window, signs[:, :, None, None], best).reshape(m, -1)


class SimBAAttack(EvasionAgent):
    """SimBA, pixel basis (Guo et al. 2019, "Simple black-box adversarial attacks").

    Score-based coordinate search run through the env in ``action_mode="set"``: the
    agent walks the pixels in a random order and tries ``-step`` then ``+step`` on
    each, keeping a change when the probability of the true class drops (targeted:
    when the target's rises), read from the observed softmax scores. The true-class
    probability is compared through the total of the other classes'
    (``1 - p_y``), which float32 still resolves when ``p_y`` rounds to 1. Tries that
    cannot change the input (a pixel already at the edge of the pixel range or of
    the linf box) are skipped without spending a query. The perturbation the env
    reports back, after its projection onto the ball, is what is kept. The
    step defaults to ``step_size * epsilon`` with the env's ``step_size``.

    The l2 counterpart of ``square``; works in linf too. Needs ``action_mode="set"``
    and a threat model that shows scores (``"scores"`` or ``"white_box"``).
    """

    name = "simba"
    threat_models = ("scores", "white_box")
    action_modes = ("set",)

    def __init__(self, step: float | None = None, seed: int | None = None) -> None:
        super().__init__(seed)
        self.step = None if step is None else check_positive("step", step)

    def hint(self, arg):
        if arg == "action_mode":
            return " (the attack sets whole perturbations and rejects some: make the env with action_mode='set')"
        return " (the attack reads the softmax scores)"

    def init_state(self, n):
        d = self.cfg.d
        self.alpha = self.step if self.step is not None else self.cfg.step_size * self.cfg.epsilon
        self.x0 = np.zeros((n, d), np.float32)
        self.best = np.zeros((n, d), np.float32)  # absolute perturbation, as the env reports it
        self.best_score = np.zeros(n)
        self.order = np.zeros((n, d), np.int64)
        self.pointer = np.zeros(n, np.int64)
        self.sign = np.full(n, -1.0)

    def score(self, obs: np.ndarray) -> np.ndarray:
        """Higher is better for the attacker: ``1 - p_y`` (untargeted) or ``p_t`` (targeted)."""
        p, onehot = self.part(obs, "feedback").astype(np.float64), self.part(obs, "label") > 0.5
        return p[onehot] if self.cfg.targeted else np.where(onehot, 0.0, p).sum(1)

    def begin(self, idx, obs):
        self.x0[idx] = self.part(obs, "x")
        self.best[idx] = 0.0
        self.best_score[idx] = self.score(obs)
        self.order[idx] = self.rng.permuted(np.broadcast_to(np.arange(self.cfg.d), (len(idx), self.cfg.d)), axis=1)
        self.pointer[idx] = 0
        self.sign[idx] = -1.0

    def propose(self, obs, start):
        answered = ~start
        if answered.any():
            score = self.score(obs)
            better = answered & (score > self.best_score)
            self.best[better] = self.part(obs, "delta")[better] * self.cfg.epsilon
            self.best_score[better] = score[better]
            self.advance(answered & (better | (self.sign > 0)), answered & ~better & (self.sign < 0))
        self.skip_no_ops()
        rows = np.arange(len(obs))
        delta = self.best.copy()
        coord = self.order[rows, self.pointer]
        delta[rows, coord] += self.sign * self.alpha
        return project_unit(delta / self.cfg.epsilon, self.cfg.norm)

    def advance(self, next_pixel: np.ndarray, other_sign: np.ndarray) -> None:
        self.sign[other_sign] = 1.0
        self.pointer[next_pixel] += 1
        self.sign[next_pixel] = -1.0
        wrapped = np.flatnonzero(self.pointer >= self.cfg.d)
        if len(wrapped):  # every pixel tried: start a new random pass
            self.order[wrapped] = self.rng.permuted(self.order[wrapped], axis=1)
            self.pointer[wrapped] = 0

    def skip_no_ops(self) -> None:
        rows = np.arange(len(self.pointer))
        eps = self.cfg.epsilon
        for _ in range(2 * self.cfg.d):
            coord = self.order[rows, self.pointer]
            cur = self.best[rows, coord]
            new = cur + self.sign * self.alpha
            if self.cfg.norm == "linf":
                new = np.clip(new, -eps, eps)
            x0 = self.x0[rows, coord]
            stuck = np.abs(np.clip(x0 + new, 0.0, 1.0) - np.clip(x0 + cur, 0.0, 1.0)) < 1e-7
            if not stuck.any():
                return
            self.advance(stuck & (self.sign > 0), stuck & (self.sign < 0))


register_baseline("noise", NoiseAttack, envs=(ENV_ID,), summary="uniform random perturbations in the Lp ball (any threat model)")
register_baseline("fgsm", FGSMAttack, envs=(ENV_ID,), summary="one epsilon step along the clean gradient's sign (white-box; Goodfellow et al. 2015)")
register_baseline(
    "eot_pgd", EOTPGDAttack, envs=(ENV_ID,),
    summary="PGD on the gradient averaged over transformed views (white-box, transforms set; Athalye et al. 2018)",
)
register_baseline("pgd", PGDAttack, envs=(ENV_ID,), summary="projected gradient ascent, one step per query (white-box; Madry et al. 2018)")
register_baseline(
    "square", SquareAttack, envs=(ENV_ID,), summary="Square attack, linf score-based random search (action_mode='set'; Andriushchenko et al. 2020)"
)
register_baseline(
    "simba", SimBAAttack, envs=(ENV_ID,), summary="SimBA pixel-basis score-based search, for l2 (action_mode='set'; Guo et al. 2019)"
)

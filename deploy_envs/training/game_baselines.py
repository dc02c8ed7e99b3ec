"""Scripted policies of every role of the registered games: the seeds of a PSRO population.

:func:`role_baselines` returns, for a game's batched core, ``{role: {name: policy}}``
with each policy a callable on a batch of its role's observations. Every role gets
at least ``"random"`` (uniform actions, seeded) unless the game lists its own; games
with known reference strategies list them (fixed defenses, FGSM, fixed filters, ...).
Names are stable, so a saved population can rebuild its scripted members by name.
"""
from __future__ import annotations

import itertools
from collections.abc import Callable
from typing import Any

import numpy as np
from gymnasium import spaces

Policy = Callable[[np.ndarray], Any]


class RandomBatch:
    """Uniform random actions from ``space``, one per observation row, from a seeded generator."""

    def __init__(self, space: spaces.Space, seed: int = 0) -> None:
        self.space = space
        self.rng = np.random.default_rng(seed)

    def seed(self, seed: int | None) -> None:
        self.rng = np.random.default_rng(seed)

    def __call__(self, obs: np.ndarray) -> np.ndarray:
        n, s = len(obs), self.space
        if isinstance(s, spaces.Discrete):
            return s.start + self.rng.integers(s.n, size=n)
        if isinstance(s, spaces.MultiDiscrete):
            return self.rng.integers(0, s.nvec, size=(n, *s.nvec.shape))
        if isinstance(s, spaces.Box):
            return self.rng.uniform(s.low, s.high, size=(n, *s.shape)).astype(s.dtype)
        raise TypeError(f"RandomBatch does not support {type(s).__name__} spaces")


class Constant:
    """The same action for every observation."""

    def __init__(self, action: Any) -> None:
        self.action = np.asarray(action)

    def __call__(self, obs: np.ndarray) -> np.ndarray:
        return np.broadcast_to(self.action, (len(obs), *self.action.shape)).copy()


# --------------------------------------------------------------------------- per game
def _attack_defense(core: Any) -> dict[str, dict[str, Policy]]:
    att: dict[str, Policy] = {"noise": _SignNoise(core.d)}
    if core.attacker_white_box:
        grad = core.obs_slices["attacker"]["gradient"]
        att = {"fgsm": lambda obs: np.asarray(obs, np.float32)[:, grad].copy(), **att}
    return {"attacker": att, "defender": {f"fixed_{name}": Constant(j) for j, name in enumerate(core.defenses)}}


class _SignNoise:
    """Random +-1 perturbation per pixel (uniform noise at the corner of the linf ball)."""

    def __init__(self, d: int, seed: int = 0) -> None:
        self.d, self.rng = d, np.random.default_rng(seed)

    def seed(self, seed: int | None) -> None:
        self.rng = np.random.default_rng(seed)

    def __call__(self, obs: np.ndarray) -> np.ndarray:
        return self.rng.choice(np.array([-1.0, 1.0], np.float32), size=(len(obs), self.d))


class _LabelFlip:
    """Poisoner: clean training points with a random wrong label (Biggio et al. 2011's label flips)."""

    def __init__(self, core: Any, seed: int = 0) -> None:
        self.p = core.poisoning
        self.rng = np.random.default_rng(seed)

    def seed(self, seed: int | None) -> None:
        self.rng = np.random.default_rng(seed)

    def __call__(self, obs: np.ndarray) -> np.ndarray:
        p, n = self.p, len(obs)
        pick = self.rng.integers(len(p.y_train), size=(n, p.points_per_step))
        wrong = (p.y_train[pick] + 1 + self.rng.integers(p.K - 1, size=pick.shape)) % p.K
        return p.encode(p.x_train[pick], wrong)


class _WhiteBoxPGD:
    """Attacker: untargeted L-inf PGD (Madry et al. 2018) from the clean input, on the white-box gradient of the
    standard model, of the robust model, or of both (an ensemble: the sum of their L1-normalised gradients),
    ``steps`` steps of size ``epsilon * step_fraction``, no random start (deterministic). An adaptive attacker
    (Athalye et al. 2018) that knows the defenses' models. The true label is the argmax of the observed
    scores: the game only draws inputs the standard model classifies correctly."""

    def __init__(self, core: Any, models: tuple[str, ...], steps: int = 10, step_fraction: float = 0.25) -> None:
        self.core, self.steps, self.alpha = core, steps, core.epsilon * step_fraction
        self.models = models
        self.ob = core.obs_slices["attacker"]

    def _victims(self) -> list[Any]:
        out = []
        for m in self.models:
            v = self.core.victim if m == "standard" else self.core.robust
            if v is None:
                raise ValueError("this game has no robust_model defense, so no robust model to attack")
            out.append(v)
        return out

    def __call__(self, obs: np.ndarray) -> np.ndarray:
        obs = np.asarray(obs, np.float32)
        x0 = obs[:, self.ob["x"]].copy()
        y = obs[:, self.ob["scores"]].argmax(1)
        eps, x = self.core.epsilon, x0.copy()
        victims = self._victims()
        for _ in range(self.steps):
            g = np.zeros_like(x)
            for v in victims:
                _, grad = v.logits_and_grad(x, y, targeted=False)
                grad = grad.detach().cpu().numpy().reshape(len(x), -1)
                g += grad / np.maximum(np.abs(grad).sum(1, keepdims=True), 1e-12)
            x = np.clip(np.clip(x + self.alpha * np.sign(g), x0 - eps, x0 + eps), 0.0, 1.0).astype(np.float32)
        return np.clip((x - x0) / eps, -1.0, 1.0).astype(np.float32)


def _attack_defense_candidates(core: Any) -> dict[str, dict[str, Policy]]:
    if not core.attacker_white_box:
        return {}
    att: dict[str, Policy] = {"pgd_standard": _WhiteBoxPGD(core, ("standard",))}
    if core.robust is not None:
        att["fgsm_robust"] = _WhiteBoxPGD(core, ("robust",), steps=1, step_fraction=1.0)
        att["pgd_robust"] = _WhiteBoxPGD(core, ("robust",))
        att["pgd_ensemble"] = _WhiteBoxPGD(core, ("standard", "robust"))
    return {"attacker": att}


def _poisoning_sanitizer(core: Any) -> dict[str, dict[str, Policy]]:
    from deploy_envs.topics.poisoning.sanitizers import SANITIZERS

    san = {"fixed_none": Constant([0, 0])}
    for f, kind in enumerate(SANITIZERS):
        if kind != "none":
            san[f"fixed_{kind}_mild"] = Constant([f, 1])
            san[f"fixed_{kind}_strict"] = Constant([f, 3])
    poisoner: dict[str, Policy] = {"label_flip": _LabelFlip(core), "random": RandomBatch(core.action_spaces["poisoner"])}
    zoo = _zoo_policy("poisoning-ppo", core.observation_spaces["poisoner"], core.action_spaces["poisoner"])
    if zoo is not None:  # the shipped PPO poisoner acts on this game's poisoner seat when the shapes agree
        poisoner["zoo_poisoning_ppo"] = zoo
    return {"poisoner": poisoner, "sanitizer": san}


def _zoo_policy(name: str, obs_space: spaces.Space, act_space: spaces.Space) -> Policy | None:
    """A shipped zoo agent as a deterministic batch policy, if it exists and its spaces match the seat's."""
    from deploy_envs.agent_zoo import resolve_agent_folder

    try:
        path = resolve_agent_folder(name) / "model.zip"
    except ValueError:  # not in the zoo
        return None
    if not path.is_file():
        return None
    from stable_baselines3 import PPO

    from deploy_envs.training.roles import SB3BatchPolicy

    model = PPO.load(str(path), device="cpu")
    if model.observation_space.shape != obs_space.shape or model.action_space.shape != act_space.shape:
        return None
    return SB3BatchPolicy(model, deterministic=True)


def _extraction_guard(core: Any) -> dict[str, dict[str, Policy]]:
    g, n, t = (int(v) for v in core.action_spaces["guard"].nvec)
    guard = {"open": Constant([0, 0, 0]), "label_only": Constant([g - 1, 0, 0]), "max_noise": Constant([0, n - 1, 0]),
             "prada": Constant([0, 0, t - 1])}
    return {"extractor": {"random_queries": RandomBatch(core.action_spaces["extractor"]), "natural_queries": _NaturalQueries(core)},
            "guard": guard}


def _extraction_guard_candidates(core: Any) -> dict[str, dict[str, Policy]]:
    """Every fixed (granularity, noise, PRADA threshold) setting of the guard, named by its values."""
    guard: dict[str, Policy] = {}
    for g, n, t in itertools.product(range(core.G), range(core.N), range(core.T)):
        guard[f"{core.granularities[g]}_noise{core.noise_levels[n]:g}_prada{core.thresholds[t]:g}"] = Constant([g, n, t])
    return {"guard": guard}


class _NaturalQueries:
    """Extractor: natural inputs drawn from the public training pool (Knockoff Nets, Orekondy et al. 2019)."""

    def __init__(self, core: Any, seed: int = 0) -> None:
        self.pool, self.b = core.benign_pool, core.batch_size
        self.rng = np.random.default_rng(seed)

    def seed(self, seed: int | None) -> None:
        self.rng = np.random.default_rng(seed)

    def __call__(self, obs: np.ndarray) -> np.ndarray:
        pick = self.rng.integers(len(self.pool), size=(len(obs), self.b))
        return self.pool[pick].reshape(len(obs), -1)


def _trojan_audit(core: Any) -> dict[str, dict[str, Policy]]:
    d_space, a_space = core.action_spaces["designer"], core.action_spaces["auditor"]
    ds, au = core.design_slices, core.audit_slices
    no = -np.ones(d_space.shape, np.float32)
    patch = -np.ones(d_space.shape, np.float32)  # a white patch of the largest size in the bottom-right corner, target 0
    patch[ds["insert"]], patch[ds["size"]], patch[ds["row"]], patch[ds["col"]] = 1.0, 1.0, 1.0, 1.0
    patch[ds["pattern"]] = 1.0
    patch[ds["target"].start] = 1.0
    declare_clean = np.zeros(a_space.shape, np.float32)
    declare_clean[au["declare"]], declare_clean[au["verdict"]] = 1.0, -1.0
    declare_trojan = declare_clean.copy()
    declare_trojan[au["verdict"]] = 1.0
    return {"designer": {"no_trojan": Constant(no), "corner_patch": Constant(patch)},
            "auditor": {"declare_clean": Constant(declare_clean), "declare_trojaned": Constant(declare_trojan),
                        "probe_corner": _ProbeCorner(core)}}


class _ProbeCorner:
    """Auditor: probe one white 4x4 patch in the bottom-right corner (the BadNets trigger, Gu et al. 2017), then
    declare trojaned if it flips more than half of the probe inputs to one class."""

    def __init__(self, core: Any) -> None:
        self.au, self.ob = core.audit_slices, core.obs_slices["auditor"]
        self.H, self.W = core.H, core.W
        self.dim = core.action_spaces["auditor"].shape[0]

    def __call__(self, obs: np.ndarray) -> np.ndarray:
        obs = np.asarray(obs, np.float32)
        n = len(obs)
        a = -np.ones((n, self.dim), np.float32)
        m = -np.ones((self.H, self.W), np.float32)
        m[-4:, -4:] = 1.0
        a[:, self.au["mask"]] = m.reshape(-1)
        a[:, self.au["pattern"]] = 1.0
        probed = obs[:, self.ob["mask_size"]].reshape(n, -1)[:, 0] > 0
        flip = obs[:, self.ob["flip_rate"]].max(1)
        a[:, self.au["declare"]] = np.where(probed, 1.0, -1.0)[:, None]
        a[:, self.au["verdict"]] = np.where(flip > 0.5, 1.0, -1.0)[:, None]
        k = self.au["target"]
        a[:, k] = -1.0
        a[np.arange(n), k.start + obs[:, self.ob["flip_rate"]].argmax(1)] = 1.0
        return a


def _lending_market(core: Any) -> dict[str, dict[str, Policy]]:
    roles = tuple(core.observation_spaces)
    out: dict[str, dict[str, Policy]] = {}
    G = len(core.action_spaces["bank"].low)
    out["bank"] = {"threshold_575": Constant(np.zeros(G, np.float32)), "threshold_650": Constant(np.full(G, 75 / 275, np.float32))}
    for r in roles:
        if r.startswith("applicants_"):
            out[r] = {"honest": Constant(np.zeros(1, np.float32)), "full_gaming": Constant(np.ones(1, np.float32))}
    out["regulator"] = {"no_regulation": Constant(np.zeros(2, np.float32)), "strict": Constant(np.array([0.0, 1.0], np.float32))}
    return out


class _GoalSeeker:
    """Protagonist: the scripted SafeNavigation controller on a batch of observations."""

    def __init__(self, core: Any, hazard_gain: float) -> None:
        from deploy_envs.topics.navigation.baselines import SafeNavigationController

        self.agent = SafeNavigationController(hazard_gain=hazard_gain)
        self.agent.setup(type("E", (), {"unwrapped": type("U", (), {"core": core})()})())

    def __call__(self, obs: np.ndarray) -> np.ndarray:
        return self.agent.act(obs, None)


def _robust_navigation(core: Any) -> dict[str, dict[str, Policy]]:
    pro: dict[str, Policy] = {"safe_controller": _GoalSeeker(core, 3.0), "goal_seeker": _GoalSeeker(core, 0.0)}
    adv: dict[str, Policy] = {"no_push": Constant(np.zeros(2, np.float32)), "random_push": RandomBatch(core.action_spaces["adversary"])}
    # the shipped RARL agents (Pinto et al. 2017) where their spaces fit this configuration
    for name in ("rarl-protagonist", "rarl-baseline"):
        zoo = _zoo_policy(name, core.observation_spaces["protagonist"], core.action_spaces["protagonist"])
        if zoo is not None:
            pro[f"zoo_{name.replace('-', '_')}"] = zoo
    for name in ("rarl-adversary", "rarl-baseline-adversary"):
        zoo = _zoo_policy(name, core.observation_spaces["adversary"], core.action_spaces["adversary"])
        if zoo is not None:
            adv[f"zoo_{name.replace('-', '_')}"] = zoo
    return {"protagonist": pro, "adversary": adv}


class _CanaryAuditorSeat:
    """Auditor of ``PrivacyGame-v0``: a ``PrivacyAudit-v0`` reference auditor (its canary, the threshold from last round's quantiles)."""

    def __init__(self, core: Any, auditor: Any) -> None:
        self.agent = auditor
        self.agent.bind(core)

    def __call__(self, obs: np.ndarray) -> np.ndarray:
        obs = np.asarray(obs, np.float32)
        return self.agent.act(obs, np.zeros(len(obs), bool))  # the first round is read from its all-zero quantiles


def _privacy_game(core: Any) -> dict[str, dict[str, Policy]]:
    from deploy_envs.topics.privacy_audit.baselines import CraftedCanary, GradientCanary, MislabeledCanary, NaturalCanary

    def recipe(sigma: float, clip: float) -> np.ndarray:  # the trainer's action for a noise multiplier and clipping norm (log scales)
        a = [np.log(sigma / core.sigma_min) / np.log(core.sigma_max / core.sigma_min), np.log(clip / core.clip_min) / np.log(core.clip_max / core.clip_min)]
        return np.clip(np.asarray(a, np.float32), 0.0, 1.0)

    trainer: dict[str, Policy] = {f"sigma_{s:g}_clip_1": Constant(recipe(s, 1.0)) for s in (1.0, 2.0, 4.0)}
    kinds = (("crafted_canary", CraftedCanary), ("mislabeled_canary", MislabeledCanary), ("natural_canary", NaturalCanary)) \
        if core.canary_space == "input" else (("gradient_canary", GradientCanary),)
    return {"trainer": trainer, "auditor": {name: _CanaryAuditorSeat(core, cls()) for name, cls in kinds}}


GAME_BASELINES: dict[str, Callable[[Any], dict[str, dict[str, Policy]]]] = {
    "deploy_envs/PrivacyGame-v0": _privacy_game,
    "deploy_envs/AttackDefense-v0": _attack_defense,
    "deploy_envs/PoisoningSanitizer-v0": _poisoning_sanitizer,
    "deploy_envs/ExtractionGuard-v0": _extraction_guard,
    "deploy_envs/TrojanAudit-v0": _trojan_audit,
    "deploy_envs/LendingMarket-v0": _lending_market,
    "deploy_envs/RobustNavigation-v0": _robust_navigation,
}


#: Parametrised policies that a PSRO best-response oracle may add to a population (beside the PPO best
#: response) when one of them answers the meta-strategy better than every member: they tighten the
#: estimate of exploitability where PPO alone stays below the scripted policies.
GAME_CANDIDATES: dict[str, Callable[[Any], dict[str, dict[str, Policy]]]] = {
    "deploy_envs/AttackDefense-v0": _attack_defense_candidates,
    "deploy_envs/ExtractionGuard-v0": _extraction_guard_candidates,
}


def role_candidates(game: Any, core: Any) -> dict[str, dict[str, Policy]]:
    """``{role: {name: policy}}``: the game's oracle candidates (no name or constant action of a seed repeated)."""
    listed = GAME_CANDIDATES[game](core) if isinstance(game, str) and game in GAME_CANDIDATES else {}
    seeds = role_baselines(game, core)
    out: dict[str, dict[str, Policy]] = {}
    for role, cands in listed.items():
        taken = [np.asarray(p.action) for p in seeds.get(role, {}).values() if isinstance(p, Constant)]
        keep = {n: p for n, p in cands.items() if n not in seeds.get(role, {})
                and not (isinstance(p, Constant) and any(np.array_equal(p.action, a) for a in taken))}
        if keep:
            out[role] = keep
    return out


def role_baselines(game: Any, core: Any) -> dict[str, dict[str, Policy]]:
    """``{role: {name: policy}}``: the game's scripted policies, ``"random"`` for any role it lists none for."""
    listed = GAME_BASELINES[game](core) if isinstance(game, str) and game in GAME_BASELINES else {}
    out: dict[str, dict[str, Policy]] = {}
    for role, space in core.action_spaces.items():
        out[role] = dict(listed.get(role) or {"random": RandomBatch(space)})
    return out


__all__ = ["GAME_BASELINES", "GAME_CANDIDATES", "Constant", "RandomBatch", "role_baselines", "role_candidates"]

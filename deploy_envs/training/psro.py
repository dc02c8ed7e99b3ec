"""Policy-Space Response Oracles (PSRO; Lanctot et al. 2017) for every registered game.

Each role keeps a population of policies, seeded with the role's scripted policies
(:mod:`deploy_envs.training.game_baselines`). Each iteration:

1. solve the empirical meta-game (the payoff tensor over the populations) for a
   meta-strategy ``sigma`` (a mixture over each role's population);
2. train one best response per role with stable-baselines3 PPO against the other
   roles playing ``sigma`` (:class:`~deploy_envs.training.roles.RoleVecEnv`, each copy
   draws an opponent member per episode);
3. add the best responses, evaluate every new profile over ``episodes`` episodes
   (mean and 95% CI per role) and fill the payoff tensor;
4. measure NashConv of ``sigma`` (Lanctot et al. 2017): the sum over roles of the
   gain of the best member of the grown population against ``sigma``, which contains
   the best response just trained. With RL best responses this is an estimate, a
   lower bound up to the best responses' quality.

With the Nash meta-solver on a two-player game this is the double oracle
(McMahan et al. 2003). Meta-solvers:

* ``"nash"`` (two roles): nashpy. A zero-sum meta-game is solved by its linear
  program; a general-sum one by Lemke-Howson from every starting label, keeping the
  first profile that checks as an equilibrium (support enumeration as fall-back).
  nashpy is chosen because it is pure Python on numpy/scipy (no build), maintained,
  and covers the two-player cases exactly.
* ``"prd"``: projected replicator dynamics (Lanctot et al. 2017, Sec. 3.2), written
  here on the payoff tensor; the default for three or more roles (LendingMarket).
  Every role's regret against the population is reported, so a reader sees how far
  from an equilibrium of the meta-game it stopped.
* ``"uniform"`` (fictitious play over the population) and ``"last"`` (every role's
  newest member: iterated best response, the alternating self-play special case).

Outputs in ``out_dir`` (resumable: run again with more iterations to continue):
``psro.json`` (populations, payoff tensor with CIs, per-iteration history),
``<role>/<member>.zip`` (the PPO best responses, policy weights only),
``exploitability.png`` and ``payoff.png``.
"""
from __future__ import annotations

import itertools
import json
import logging
import os
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from stable_baselines3.common.callbacks import BaseCallback

from deploy_envs.core.rendering import save_figure
from deploy_envs.core.validation import check_choice, check_number
from deploy_envs.training.roles import Mixture, RoleVecEnv, evaluate_game, game_roles, make_core

logger = logging.getLogger(__name__)

META_SOLVERS = ("auto", "nash", "prd", "uniform", "last")
STATE_FILE = "psro.json"


# --------------------------------------------------------------------------
# Meta-game algebra on payoff tensors: payoff[r] has shape (|P_0|, ..., |P_{n-1}|)
# --------------------------------------------------------------------------
def expected_payoffs(payoff: np.ndarray, sigma: Sequence[np.ndarray]) -> np.ndarray:
    """Each role's expected payoff when every role plays its mixture in ``sigma``."""
    out = []
    for r in range(len(payoff)):
        t = payoff[r]
        for s in reversed(sigma):
            t = t @ s
        out.append(float(t))
    return np.array(out)


def deviation_payoffs(payoff: np.ndarray, sigma: Sequence[np.ndarray], role: int) -> np.ndarray:
    """Payoff to ``role`` of each of its pure strategies against the others' mixtures."""
    t = np.moveaxis(payoff[role], role, 0)
    others = [s for k, s in enumerate(sigma) if k != role]
    for s in reversed(others):
        t = t @ s
    return np.asarray(t, float)


def regrets(payoff: np.ndarray, sigma: Sequence[np.ndarray]) -> np.ndarray:
    """Per role: best pure deviation payoff minus the payoff of ``sigma`` (>= 0 up to rounding)."""
    value = expected_payoffs(payoff, sigma)
    return np.array([deviation_payoffs(payoff, sigma, r).max() - value[r] for r in range(len(payoff))])


def nash_conv(payoff: np.ndarray, sigma: Sequence[np.ndarray]) -> float:
    """NashConv (Lanctot et al. 2017): the sum of the roles' regrets; 0 exactly at a Nash equilibrium."""
    return float(np.maximum(regrets(payoff, sigma), 0.0).sum())


def exploitability(payoff: np.ndarray, sigma: Sequence[np.ndarray]) -> float:
    """NashConv divided by the number of roles (for two-player zero-sum games, the usual exploitability)."""
    return nash_conv(payoff, sigma) / len(payoff)


def is_zero_sum(payoff: np.ndarray, tol: float = 1e-9) -> bool:
    total = payoff.sum(0)
    return bool(np.abs(total - total.flat[0]).max() <= tol * max(1.0, np.abs(payoff).max()))


def solve_nash_2p(payoff: np.ndarray) -> list[np.ndarray]:
    """A Nash equilibrium of a two-player meta-game with nashpy (the ``games`` extra)."""
    try:
        import nashpy
    except ImportError as err:  # pragma: no cover - depends on the install
        raise ImportError("the Nash meta-solver needs nashpy: pip install 'deploy-envs[games]'") from err
    A, B = np.asarray(payoff[0], float), np.asarray(payoff[1], float)
    scale = max(1.0, np.abs(A).max(), np.abs(B).max())
    tol = 1e-6 * scale
    if is_zero_sum(payoff):
        shift = (A + B).flat[0] / 2  # a constant-sum game: remove the constant
        x, y = nashpy.Game(A - shift).linear_program()
        return [_clean(x), _clean(y)]
    game = nashpy.Game(A, B)
    candidates: list[tuple[np.ndarray, np.ndarray]] = []
    import warnings

    for label in range(sum(A.shape)):
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", RuntimeWarning)  # degenerate tableaux divide by zero
                candidates.append(game.lemke_howson(initial_dropped_label=label))
        except Exception:  # noqa: BLE001 - degenerate games can fail from some labels
            continue
    for x, y in candidates:
        if x.shape == (A.shape[0],) and y.shape == (A.shape[1],) and np.isfinite(x).all() and np.isfinite(y).all():
            sig = [_clean(x), _clean(y)]
            if np.all(regrets(payoff, sig) <= 1e-4 * scale + tol):
                return sig
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        for x, y in game.support_enumeration():
            return [_clean(x), _clean(y)]
    logger.warning("no Nash equilibrium found by Lemke-Howson or support enumeration; using projected replicator dynamics")
    return projected_replicator_dynamics(payoff)


def _clean(x: np.ndarray) -> np.ndarray:
    x = np.clip(np.asarray(x, float), 0.0, None)
    x[x < 1e-9] = 0.0
    return x / x.sum()


def projected_replicator_dynamics(payoff: np.ndarray, steps: int = 100_000, dt: float = 0.03, gamma: float = 1e-3,
                                  tol: float = 1e-3) -> list[np.ndarray]:
    """Projected replicator dynamics (Lanctot et al. 2017): replicator steps of size ``dt``, each mixture projected
    onto ``{x : x_j >= gamma / |P|}``, on payoffs normalised to [0, 1]. Returns the average of the mixtures after a
    burn-in of 1,000 steps (the dynamics may cycle, as on rock-paper-scissors; the average converges), stopping
    early once the average's NashConv (normalised payoffs) is below ``tol``."""
    n = len(payoff)
    lo, hi = payoff.min(), payoff.max()
    p = (payoff - lo) / (hi - lo) if hi > lo else np.zeros_like(payoff)
    sigma = [np.full(payoff.shape[1 + r], 1.0 / payoff.shape[1 + r]) for r in range(n)]
    total = [np.zeros_like(s) for s in sigma]
    burn, count = min(1000, steps // 2), 0
    for t in range(steps):
        new = []
        for r in range(n):
            dev = deviation_payoffs(p, sigma, r)
            s = sigma[r] + dt * sigma[r] * (dev - sigma[r] @ dev)
            s = np.maximum(s, gamma / len(s))
            new.append(s / s.sum())
        sigma = new
        if t >= burn:
            count += 1
            for r in range(n):
                total[r] += sigma[r]
            if count % 2000 == 0 and nash_conv(p, [x / count for x in total]) < tol:
                break
    return [_clean(x / max(count, 1)) for x in total]


def solve_meta(payoff: np.ndarray, solver: str) -> list[np.ndarray]:
    """The meta-strategy of ``solver`` on ``payoff`` (see the module doc)."""
    n = len(payoff)
    sizes = payoff.shape[1:]
    if solver == "auto":
        solver = "nash" if n == 2 else "prd"
    if solver == "nash":
        if n != 2:
            raise ValueError(f"meta_solver='nash' needs a two-role game; this one has {n} roles (use 'prd')")
        return solve_nash_2p(payoff)
    if solver == "prd":
        return projected_replicator_dynamics(payoff)
    if solver == "uniform":
        return [np.full(k, 1.0 / k) for k in sizes]
    if solver == "last":
        return [np.eye(k)[k - 1] for k in sizes]
    raise ValueError(f"meta_solver={solver!r} is not one of {META_SOLVERS}")


# --------------------------------------------------------------------------
# Populations and the payoff table on disk
# --------------------------------------------------------------------------
class Population:
    """The state of a PSRO run: members per role, the evaluated profiles and the history."""

    def __init__(self, folder: Path, state: dict[str, Any]) -> None:
        self.folder = folder
        self.state = state
        self._policies: dict[tuple[str, str], Any] = {}
        self._scripted: dict[str, dict[str, Any]] | None = None
        self.seeds: Mapping[str, Mapping[str, Any]] | None = None
        self.candidates: Mapping[str, Mapping[str, Any]] | None = None

    def oracle_candidates(self, core: Any) -> Mapping[str, Mapping[str, Any]]:
        """The parametrised policies the best-response oracle may add (given to :func:`solve`, or the game's own)."""
        if self.candidates is None:
            from deploy_envs.training.game_baselines import role_candidates

            self.candidates = role_candidates(self.state["game"], core) if self.seeds is None else {}
        return self.candidates

    @property
    def roles(self) -> list[str]:
        return list(self.state["roles"])

    def members(self, role: str) -> list[dict[str, Any]]:
        return self.state["population"][role]

    def names(self, role: str) -> list[str]:
        return [m["name"] for m in self.members(role)]

    def policy(self, role: str, name: str, core: Any) -> Any:
        """The callable of member ``name`` of ``role`` (scripted ones rebuilt by name, PPO ones loaded)."""
        key = (role, name)
        if key not in self._policies:
            member = next(m for m in self.members(role) if m["name"] == name)
            if member["kind"] == "scripted":
                if self._scripted is None:
                    from deploy_envs.training.game_baselines import role_baselines

                    self._scripted = {r: dict(d) for r, d in (self.seeds or role_baselines(self.state["game"], core)).items()}
                if name not in self._scripted.get(role, {}):  # an oracle candidate that joined the population
                    self._scripted.setdefault(role, {}).update(self.oracle_candidates(core).get(role, {}))
                self._policies[key] = self._scripted[role][name]
            else:
                from stable_baselines3 import PPO

                from deploy_envs.training.roles import SB3BatchPolicy

                path = self.folder / member["path"]
                verify_member(self.folder, member["path"])
                model = PPO.load(str(path), device="cpu")
                self._policies[key] = SB3BatchPolicy(model, deterministic=self.state["config"]["deterministic"])
        return self._policies[key]

    def tensor(self) -> tuple[np.ndarray, np.ndarray]:
        """``(mean, ci95)`` of shape ``(n_roles, |P_0|, ..., |P_{n-1}|)`` (NaN where not evaluated)."""
        sizes = [len(self.members(r)) for r in self.roles]
        mean = np.full((len(sizes), *sizes), np.nan)
        ci = np.full_like(mean, np.nan)
        for key, cell in self.state["payoffs"].items():
            prof = tuple(int(k) for k in key.split(","))
            if all(p < s for p, s in zip(prof, sizes)):
                for r, role in enumerate(self.roles):
                    mean[(r, *prof)] = cell[role]["mean"]
                    ci[(r, *prof)] = cell[role]["ci95"]
        return mean, ci

    def sigma_named(self, sigma: Sequence[np.ndarray]) -> dict[str, dict[str, float]]:
        return {r: {n: round(float(w), 6) for n, w in zip(self.names(r), s)} for r, s in zip(self.roles, sigma)}

    def sigma_from_named(self, named: Mapping[str, Mapping[str, float]]) -> list[np.ndarray]:
        return [np.array([float(named[r].get(n, 0.0)) for n in self.names(r)]) for r in self.roles]

    def mixture(self, role: str, weights: np.ndarray, core: Any) -> Mixture:
        keep = [j for j, w in enumerate(weights) if w > 0]
        names = [self.names(role)[j] for j in keep]
        return Mixture([self.policy(role, n, core) for n in names], [weights[j] for j in keep], names)

    def save(self) -> None:
        path = self.folder / STATE_FILE
        tmp = path.with_suffix(".json.tmp")
        tmp.write_text(json.dumps(self.state, indent=1, default=_json_default) + "\n")
        os.replace(tmp, path)


MANIFEST = "manifest.json"


def _sha256(path: Path) -> str:
    import hashlib

    return hashlib.sha256(path.read_bytes()).hexdigest()


def verify_member(folder: Path, rel: str) -> None:
    """If ``folder`` has a manifest (a shipped population), refuse a member file whose sha256 differs from it."""
    manifest = folder / MANIFEST
    if not manifest.is_file():
        return
    want = json.loads(manifest.read_text()).get(rel)
    if want is None:
        raise ValueError(f"{rel!r} is not listed in {manifest}; refusing to load an unlisted model")
    got = _sha256(folder / rel)
    if got != want:
        raise ValueError(f"{folder / rel} has sha256 {got[:12]}..., the manifest says {want[:12]}...; refusing to load it")


def record_member(folder: Path, rel: str) -> None:
    """A member this run has just written into ``folder``: where the folder has a manifest (a run
    resumed from a shipped population), list the new file's sha256 in it so the run can load it."""
    manifest = Path(folder) / MANIFEST
    if manifest.is_file():
        listed = json.loads(manifest.read_text())
        listed[rel] = _sha256(Path(folder) / rel)
        manifest.write_text(json.dumps(listed, indent=1) + "\n")


def ship_population(run_dir: str | Path, name: str, *, root: str | Path | None = None, scenario: str | None = None,
                    notes: str = "", outcome: Mapping[str, Any] | None = None) -> Path:
    """Copy a finished PSRO run into the agent zoo as ``<root>/<name>/`` with a manifest (sha256) and a card.

    The folder holds ``psro.json``, the PPO members (``<role>/<member>.zip``), the plots,
    ``manifest.json`` and ``card.json``/``CARD.md`` (meta-strategy, payoff table,
    exploitability per iteration, budget, hardware, and ``outcome``: the game's checked result).
    """
    import shutil

    from deploy_envs.agent_zoo import agents_dir, strip_optimizer_state, write_card
    from deploy_envs.training.cards import build_card

    run = load_population(run_dir)
    dest = Path(root) if root is not None else agents_dir()
    dest = dest / name
    dest.mkdir(parents=True, exist_ok=True)
    files = [STATE_FILE] + [m["path"] for r in run.roles for m in run.members(r) if m["kind"] == "ppo"]
    for plot in ("exploitability.png", "payoff.png"):
        if (run.folder / plot).is_file():
            files.append(plot)
    for rel in files:
        (dest / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(run.folder / rel, dest / rel)
    for rel in files:  # prediction needs no optimizer moments: keep the zoo small
        if rel.endswith(".zip"):
            strip_optimizer_state(dest / rel)
    (dest / MANIFEST).write_text(json.dumps({rel: _sha256(dest / rel) for rel in files if rel.endswith(".zip")}, indent=1) + "\n")
    st, rep = run.state, run.state["report"]
    cfg = st["config"]
    n_br = sum(1 for r in run.roles for m in run.members(r) if m["kind"] == "ppo")
    scores = {
        "exploitability_per_iteration": rep["exploitability_per_iteration"],
        "nash_conv_per_iteration": rep["nash_conv_per_iteration"],
        "regret_per_iteration": [h["regret"] for h in st["history"]],
        "meta_strategy": rep["meta_strategy"],
        "value_of_meta_strategy": st["history"][-1]["value"] if st["history"] else None,
        "payoff_table": {"roles": run.roles, "population": rep["population"], "mean": rep["payoff_mean"], "ci95": rep["payoff_ci95"],
                         "episodes_per_cell": cfg["episodes"], "seed": cfg["seed"]},
    }
    if outcome:
        scores["outcome"] = dict(outcome)
    card = build_card(
        name=name, env_id=st["game"], env_kwargs=st["game_kwargs"],
        algorithm=f"PSRO ({rep['meta_solver']} meta-solver; PPO best responses)",
        hyperparameters={"ppo": cfg["ppo_kwargs"], "timesteps_per_best_response": cfg["timesteps"], "iterations": rep["iterations"],
                         "episodes_per_cell": cfg["episodes"], "deterministic_members": cfg["deterministic"]},
        timesteps=cfg["timesteps"] * n_br, num_envs=cfg["num_envs"], seed=cfg["seed"], scenario=scenario, training=scores,
        notes=notes, train_seconds=st.get("train_seconds"), device=f"cpu ({st.get('hardware', 'unknown hardware')})")
    write_card(dest, card)
    return dest


def _json_default(obj: Any) -> Any:
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    return str(obj)


def load_population(folder: str | Path) -> Population:
    """A saved PSRO population (``psro.json`` and the member zips in ``folder``)."""
    folder = Path(folder)
    path = folder / STATE_FILE
    if not path.is_file():
        raise ValueError(f"population={str(folder)!r} holds no {STATE_FILE}; run `deploy-envs solve` with --out there first")
    return Population(folder, json.loads(path.read_text()))


# --------------------------------------------------------------------------
# The trainer
# --------------------------------------------------------------------------
def _fill(pop: Population, core: Any, game: Any, episodes: int, seed: int, num_envs: int, progress: Any) -> None:
    sizes = [len(pop.members(r)) for r in pop.roles]
    todo = [p for p in itertools.product(*(range(s) for s in sizes)) if ",".join(map(str, p)) not in pop.state["payoffs"]]
    bar = progress(total=len(todo), desc="payoff table", leave=False) if progress and todo else None
    for prof in todo:
        policies = {r: pop.policy(r, pop.names(r)[j], core) for r, j in zip(pop.roles, prof)}
        res = evaluate_game(game, policies, episodes, seed, num_envs=num_envs, core=core, game_kwargs=pop.state["game_kwargs"])
        pop.state["payoffs"][",".join(map(str, prof))] = res["returns"]
        if bar is not None:
            bar.update(1)
    if bar is not None:
        bar.close()


def _train_best_response(game: Any, pop: Population, role: str, sigma: list[np.ndarray], core_eval: Any, *, timesteps: int,
                         num_envs: int, seed: int, ppo_kwargs: Mapping[str, Any], path: Path, game_kwargs: Mapping[str, Any]) -> None:
    from stable_baselines3 import PPO

    opponents = {r: pop.mixture(r, s, core_eval) for r, s in zip(pop.roles, sigma) if r != role}
    env = RoleVecEnv(game, role, opponents, num_envs=num_envs, seed=seed, game_kwargs=game_kwargs)
    n_steps = max(8, min(512, timesteps // (num_envs * 8)))  # at least ~8 PPO updates per best response
    kwargs = {"n_steps": n_steps, "batch_size": min(64, n_steps * num_envs), "verbose": 0, "device": "cpu", **dict(ppo_kwargs)}
    model = PPO("MlpPolicy", env, seed=seed, **kwargs)
    guard = _FiniteWeights()
    try:
        model.learn(timesteps, callback=guard)
    except ValueError as err:  # a PPO update overflowed (NaN parameters of the action distribution)
        if guard.snapshot is None:
            raise
        logger.warning("best response of %s stopped at a non-finite PPO update (%s); keeping the last finite weights", role, err)
    guard.restore_if_needed(model)
    path.parent.mkdir(parents=True, exist_ok=True)
    _save_compact(model, path)
    env.close()


def _save_compact(model: Any, path: Path) -> None:
    """Save a PPO model for prediction: a fresh optimizer (no Adam moments) and no buffers; ``PPO.load`` still loads it."""
    opt = model.policy.optimizer
    model.policy.optimizer = type(opt)(model.policy.parameters(), **opt.defaults)
    model.save(path, exclude=["env", "rollout_buffer", "ep_info_buffer", "ep_success_buffer"])


def compact_population(folder: str | Path) -> None:
    """Re-save every PPO member of a population without optimizer state and rewrite its manifest's sha256s."""
    from stable_baselines3 import PPO

    pop = load_population(folder)
    for r in pop.roles:
        for m in pop.members(r):
            if m["kind"] == "ppo":
                path = pop.folder / m["path"]
                verify_member(pop.folder, m["path"])
                _save_compact(PPO.load(str(path), device="cpu"), path)
    manifest = pop.folder / MANIFEST
    if manifest.is_file():
        old = json.loads(manifest.read_text())
        manifest.write_text(json.dumps({rel: _sha256(pop.folder / rel) for rel in old}, indent=1) + "\n")


class _FiniteWeights(BaseCallback):
    """SB3 callback: keep the last policy weights that are all finite; stop and restore them if an update breaks them.

    With high-dimensional Gaussian actions the PPO probability ratio can overflow and
    turn the weights into NaN; the best response then keeps its last finite weights.
    """

    def __init__(self) -> None:
        super().__init__()
        self.snapshot: dict[str, Any] | None = None
        self.broken = False

    @staticmethod
    def _finite(params: Mapping[str, Any]) -> bool:
        import torch

        return all(bool(torch.isfinite(v).all()) for v in params.values() if v.is_floating_point())

    def _on_rollout_start(self) -> None:
        params = self.model.policy.state_dict()
        if self._finite(params):
            self.snapshot = {k: v.clone() for k, v in params.items()}
        else:
            self.broken = True

    def _on_step(self) -> bool:
        return not self.broken

    def restore_if_needed(self, model: Any) -> None:
        if self.snapshot is not None and not self._finite(model.policy.state_dict()):
            model.policy.load_state_dict(self.snapshot)
            logger.warning("restored the last finite weights of a best response")


def solve(
    game: Any,
    *,
    iterations: int = 3,
    timesteps: int = 4096,
    out_dir: str | Path = "psro_run",
    game_kwargs: Mapping[str, Any] | None = None,
    seed: int = 0,
    episodes: int = 32,
    num_envs: int = 8,
    meta_solver: str = "auto",
    ppo_kwargs: Mapping[str, Any] | None = None,
    seeds: Mapping[str, Mapping[str, Callable[[np.ndarray], Any]]] | None = None,
    roles_to_train: Sequence[str] | None = None,
    oracle: bool = True,
    candidates: Mapping[str, Mapping[str, Callable[[np.ndarray], Any]]] | None = None,
    deterministic: bool = True,
    progress: bool = True,
    plots: bool = True,
) -> dict[str, Any]:
    """Run PSRO on ``game`` (a registered game id or a ``ParallelGameView`` subclass) up to ``iterations`` iterations.

    ``timesteps`` PPO steps per best response, on ``num_envs`` batched copies;
    ``episodes`` episodes per payoff-table cell; ``seeds`` replaces the scripted
    populations (``{role: {name: policy}}``; needed for a game that is not registered).
    ``roles_to_train`` limits which roles get best responses (the others keep their
    seeds; NashConv then counts only the trained roles' regrets beyond the population).
    With ``oracle`` (default), the best-response oracle of each role is the better of the
    PPO best response and the best of the role's parametrised candidates (``candidates``,
    ``{role: {name: policy}}``, or the game's own from
    :func:`~deploy_envs.training.game_baselines.role_candidates`): each iteration the
    candidate with the highest expected payoff against the meta-strategy (evaluated against
    every member in the others' support, ``episodes`` episodes each) joins the population
    when it beats every member already there. NashConv then takes the maximum over both,
    a tighter lower bound than PPO alone.
    PPO members play deterministically (their mean or most likely action) unless
    ``deterministic=False``; mixing is the meta-strategy's job.
    If ``out_dir`` holds a run of the same game and arguments, it continues from there.
    Returns the report (also in ``out_dir/psro.json``).
    """
    iterations = check_number("iterations", iterations, low=0, integer=True)
    timesteps = check_number("timesteps", timesteps, low=1, integer=True)
    episodes = check_number("episodes", episodes, low=1, integer=True)
    num_envs = check_number("num_envs", num_envs, low=1, integer=True)
    seed = check_number("seed", seed, integer=True)
    meta_solver = check_choice("meta_solver", meta_solver, META_SOLVERS)
    game_kwargs = dict(game_kwargs or {})
    game_name = game if isinstance(game, str) else f"{game.__module__}:{game.__qualname__}"
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    core = make_core(game, min(num_envs, episodes), game_kwargs)
    roles = list(game_roles(core))
    if roles_to_train is not None:
        bad = [r for r in roles_to_train if r not in roles]
        if bad or not roles_to_train:
            raise ValueError(f"roles_to_train={list(roles_to_train)!r} must name roles of the game: {roles}")
    train_roles = list(roles_to_train) if roles_to_train is not None else roles
    if meta_solver == "nash" and len(roles) != 2:
        raise ValueError(f"meta_solver='nash' needs a two-role game; {game_name} has roles {roles} (use 'prd' or 'auto')")
    config = {"timesteps": timesteps, "episodes": episodes, "num_envs": num_envs, "seed": seed, "meta_solver": meta_solver,
              "ppo_kwargs": dict(ppo_kwargs or {}), "deterministic": bool(deterministic), "roles_to_train": train_roles,
              "oracle": bool(oracle)}
    if (out / STATE_FILE).is_file():
        pop = load_population(out)
        st = pop.state
        if st["game"] != game_name or st["game_kwargs"] != json.loads(json.dumps(game_kwargs, default=_json_default)):
            raise ValueError(f"out_dir={str(out)!r} holds a run of {st['game']} {st['game_kwargs']}; use another folder")
        for key in ("episodes", "seed", "meta_solver", "deterministic"):
            if st["config"][key] != config[key]:
                raise ValueError(f"out_dir={str(out)!r} was run with {key}={st['config'][key]!r}; resuming needs the same (got {config[key]!r})")
        st["config"].update({k: config[k] for k in ("timesteps", "num_envs", "ppo_kwargs", "roles_to_train", "oracle")})
        logger.info("resuming %s at iteration %d", out, len(st["history"]))
    else:
        from deploy_envs.training.game_baselines import role_baselines

        base = seeds if seeds is not None else role_baselines(game, core)
        missing = [r for r in roles if not base.get(r)]
        if missing:
            raise ValueError(f"seeds must give at least one policy for every role; missing {missing}")
        state = {"game": game_name, "game_kwargs": game_kwargs, "roles": roles, "config": config,
                 "population": {r: [{"name": n, "kind": "scripted", "iteration": 0} for n in base[r]] for r in roles},
                 "payoffs": {}, "history": [], "train_seconds": 0.0,
                 "hardware": f"{os.cpu_count()}-core {_machine()} CPU"}
        pop = Population(out, state)
    pop.seeds = seeds
    if candidates is not None:
        pop.candidates = {r: dict(c) for r, c in candidates.items()}
        bad = [r for r in pop.candidates if r not in roles]
        if bad:
            raise ValueError(f"candidates names roles {bad} that the game does not have; roles: {roles}")
    bar_cls = _tqdm() if progress else None
    solver = meta_solver if meta_solver != "auto" else ("nash" if len(roles) == 2 else "prd")
    start = time.perf_counter()
    _fill(pop, core, game, episodes, seed, num_envs, bar_cls)
    pop.save()
    done = len(pop.state["history"])
    it_bar = bar_cls(total=iterations, initial=min(done, iterations), desc=f"PSRO {game_name}") if bar_cls and iterations > done else None
    for it in range(done, iterations):
        mean, _ = pop.tensor()
        sigma = solve_meta(mean, solver)
        sizes_before = [len(pop.members(r)) for r in roles]
        for r in train_roles:
            name = f"br{it + 1}"
            rel = f"{r}/{name}.zip"
            _train_best_response(game, pop, r, sigma, core, timesteps=timesteps, num_envs=num_envs,
                                 seed=seed + 7 * (it + 1) + roles.index(r), ppo_kwargs=pop.state["config"]["ppo_kwargs"],
                                 path=out / rel, game_kwargs=game_kwargs)
            record_member(out, rel)
        oracle_rows: dict[str, Any] = {}
        if pop.state["config"].get("oracle", False):
            for r in train_roles:
                pick = _oracle_candidate(pop, core, game, r, sigma, episodes, seed, num_envs)
                if pick is not None:
                    oracle_rows[r] = pick
        for r in train_roles:
            pop.members(r).append({"name": f"br{it + 1}", "kind": "ppo", "path": f"{r}/br{it + 1}.zip", "iteration": it + 1})
            if oracle_rows.get(r, {}).get("added"):
                pop.members(r).append({"name": oracle_rows[r]["candidate"], "kind": "scripted", "oracle": True, "iteration": it + 1})
        _fill(pop, core, game, episodes, seed, num_envs, bar_cls)
        mean, ci = pop.tensor()
        grown = [np.concatenate([s, np.zeros(len(pop.members(r)) - k)]) for r, s, k in zip(roles, sigma, sizes_before)]
        value = expected_payoffs(mean, grown)
        reg = regrets(mean, grown)
        br_value, br_ci = {}, {}
        for ri, r in enumerate(roles):
            if r in train_roles:
                dev = deviation_payoffs(mean, grown, ri)
                dev_ci = np.sqrt(_deviation_var(ci, grown, ri))
                new = np.arange(sizes_before[ri], len(dev))  # this iteration's best responses (PPO and oracle)
                j = int(new[np.argmax(dev[new])])
                br_value[r], br_ci[r] = float(dev[j]), float(dev_ci[j])
        row = {"iteration": it + 1, "meta_strategy": pop.sigma_named(sigma), "value": dict(zip(roles, value.round(6).tolist())),
               "best_response_value": br_value, "best_response_ci95": br_ci, "regret": dict(zip(roles, np.maximum(reg, 0).round(6).tolist())),
               "nash_conv": round(float(np.maximum(reg, 0).sum()), 6), "exploitability": round(float(np.maximum(reg, 0).sum() / len(roles)), 6),
               "zero_sum": is_zero_sum(mean, 1e-6), "seconds": round(time.perf_counter() - start, 1)}
        if oracle_rows:
            row["oracle"] = oracle_rows
        pop.state["history"].append(row)
        pop.state["train_seconds"] = round(pop.state["train_seconds"] + time.perf_counter() - start, 1)
        start = time.perf_counter()
        pop.save()
        if it_bar is not None:
            it_bar.update(1)
            it_bar.set_postfix(nash_conv=row["nash_conv"])
        logger.info("PSRO iteration %d: NashConv %.4f, meta-strategy %s", it + 1, row["nash_conv"], row["meta_strategy"])
    if it_bar is not None:
        it_bar.close()
    report = _report(pop, solver)
    pop.state["report"] = report
    pop.save()
    if plots and pop.state["history"]:
        plot_exploitability(pop.state, out / "exploitability.png")
        if len(roles) == 2:
            plot_payoff(pop, out / "payoff.png")
    return pop.state


def _oracle_candidate(pop: Population, core: Any, game: Any, role: str, sigma: Sequence[np.ndarray], episodes: int, seed: int,
                      num_envs: int) -> dict[str, Any] | None:
    """The best of ``role``'s oracle candidates (not yet members) against ``sigma``: its expected payoff over every
    profile of the others' support (``episodes`` episodes each, the table's seed), and whether it beats every member."""
    roles = pop.roles
    ri = roles.index(role)
    cands = {n: p for n, p in pop.oracle_candidates(core).get(role, {}).items() if n not in pop.names(role)}
    if not cands:
        return None
    support = [np.flatnonzero(s > 0) if k != ri else np.array([0]) for k, s in enumerate(sigma)]
    values: dict[str, float] = {}
    for name, policy in cands.items():
        v = 0.0
        for prof in itertools.product(*support):
            w = float(np.prod([sigma[k][j] for k, j in enumerate(prof) if k != ri]))
            policies = {r: (policy if k == ri else pop.policy(r, pop.names(r)[j], core)) for k, (r, j) in enumerate(zip(roles, prof))}
            res = evaluate_game(game, policies, episodes, seed, num_envs=num_envs, core=core, game_kwargs=pop.state["game_kwargs"])
            v += w * res["returns"][role]["mean"]
        values[name] = v
    best = max(values, key=values.get)
    mean, _ = pop.tensor()
    incumbent = float(deviation_payoffs(mean, sigma, ri).max())
    return {"candidate": best, "candidate_value": round(values[best], 6), "best_member_value": round(incumbent, 6),
            "added": bool(values[best] > incumbent + 1e-9), "candidates_evaluated": len(values)}


def _deviation_var(ci: np.ndarray, sigma: Sequence[np.ndarray], role: int) -> np.ndarray:
    """Variance (from the cells' 95% half-widths) of each pure deviation's payoff against the others' mixtures."""
    var = (ci[role] / 1.96) ** 2
    t = np.moveaxis(var, role, 0)
    others = [s ** 2 for k, s in enumerate(sigma) if k != role]
    for s in reversed(others):
        t = t @ s
    return np.asarray(t, float) * 1.96 ** 2


def _report(pop: Population, solver: str) -> dict[str, Any]:
    mean, ci = pop.tensor()
    final = solve_meta(mean, solver)
    hist = pop.state["history"]
    verified = hist[-1] if hist else None
    return {
        "meta_solver": solver,
        "iterations": len(hist),
        "nash_conv_per_iteration": [h["nash_conv"] for h in hist],
        "exploitability_per_iteration": [h["exploitability"] for h in hist],
        "meta_strategy": verified["meta_strategy"] if verified else pop.sigma_named(final),
        "meta_strategy_note": "the last meta-strategy whose NashConv was estimated by best responses trained against it",
        "final_population_meta_strategy": pop.sigma_named(final),
        "final_population_regret": dict(zip(pop.roles, np.maximum(regrets(mean, final), 0).round(6).tolist())),
        "population": {r: pop.names(r) for r in pop.roles},
        "payoff_mean": mean.round(6).tolist(),
        "payoff_ci95": ci.round(6).tolist(),
    }


def _machine() -> str:
    import platform

    return platform.machine() or "unknown"


def _tqdm() -> Any:
    try:
        from tqdm.auto import tqdm
    except ImportError:  # pragma: no cover - tqdm comes with SB3's extras
        return None
    return tqdm


# --------------------------------------------------------------------------
# Reading a population back
# --------------------------------------------------------------------------
def meta_strategy_policies(folder: str | Path, *, which: str = "meta_strategy", core: Any = None) -> dict[str, Mixture]:
    """``{role: Mixture}`` of a saved population's meta-strategy (``which``: ``"meta_strategy"`` or ``"final_population_meta_strategy"``)."""
    pop = load_population(folder)
    which = check_choice("which", which, ("meta_strategy", "final_population_meta_strategy"))
    if core is None:
        core = make_core(pop.state["game"], 1, pop.state["game_kwargs"])
    sigma = pop.sigma_from_named(pop.state["report"][which])
    return {r: pop.mixture(r, s, core) for r, s in zip(pop.roles, sigma)}


def member_policy(folder: str | Path, role: str, name: str, core: Any = None) -> Any:
    """One member of a saved population as a batch policy."""
    pop = load_population(folder)
    role = check_choice("role", role, pop.roles)
    name = check_choice("name", name, pop.names(role))
    if core is None:
        core = make_core(pop.state["game"], 1, pop.state["game_kwargs"])
    return pop.policy(role, name, core)


# --------------------------------------------------------------------------
# Plots
# --------------------------------------------------------------------------
def plot_exploitability(state: Mapping[str, Any], path: str | Path) -> Path:
    """NashConv (and per-role regret) of the meta-strategy against PSRO iterations."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import matplotlib.ticker  # noqa: F401

    hist = state["history"]
    its = [h["iteration"] for h in hist]
    fig, ax = plt.subplots(figsize=(5, 3.2))
    ax.plot(its, [h["nash_conv"] for h in hist], "o-", label="NashConv")
    for r in state["roles"]:
        ax.plot(its, [h["regret"][r] for h in hist], ".--", alpha=0.7, label=f"regret {r}")
    ax.set_xlabel("PSRO iteration")
    ax.xaxis.set_major_locator(matplotlib.ticker.MaxNLocator(integer=True))
    ax.set_ylabel("estimated by trained best responses")
    ax.set_title(f"{state['game']}: exploitability of the meta-strategy", fontsize=9)
    ax.legend(fontsize=7)
    return save_figure(fig, path, dpi=100)


def plot_payoff(pop: Population, path: str | Path) -> Path:
    """Heatmap of the first role's payoff over the two populations (cell text: mean +- 95% CI)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    mean, ci = pop.tensor()
    r0, r1 = pop.roles
    fig, ax = plt.subplots(figsize=(1.2 + 0.9 * mean.shape[2], 1.0 + 0.5 * mean.shape[1]))
    im = ax.imshow(mean[0], cmap="RdBu_r", aspect="auto")
    for i in range(mean.shape[1]):
        for j in range(mean.shape[2]):
            ax.text(j, i, f"{mean[0, i, j]:.2f}\n±{ci[0, i, j]:.2f}", ha="center", va="center", fontsize=6)
    ax.set_xticks(range(mean.shape[2]), pop.names(r1), rotation=40, ha="right", fontsize=7)
    ax.set_yticks(range(mean.shape[1]), pop.names(r0), fontsize=7)
    ax.set_xlabel(r1)
    ax.set_ylabel(r0)
    ax.set_title(f"{r0}'s mean return", fontsize=9)
    fig.colorbar(im, ax=ax, fraction=0.04)
    return save_figure(fig, path, dpi=100)


__all__ = ["META_SOLVERS", "Population", "deviation_payoffs", "expected_payoffs", "exploitability", "is_zero_sum",
           "load_population", "member_policy", "meta_strategy_policies", "nash_conv", "plot_exploitability", "plot_payoff",
           "projected_replicator_dynamics", "regrets", "solve", "solve_meta", "solve_nash_2p"]


# --------------------------------------------------------------------------
# Playing a saved population against others
# --------------------------------------------------------------------------
def evaluate_population(folder: str | Path, *, opponents: Mapping[str, Mapping[str, Any]] | None = None, episodes: int = 64,
                        seed: int = 10_000, which: str = "meta_strategy", num_envs: int = 16,
                        info_keys: Sequence[str] = ()) -> list[dict[str, Any]]:
    """Play the saved meta-strategy with one role at a time replaced by each candidate opponent.

    Candidates for a role: every member of its population, its scripted policies, and
    ``opponents[role]`` (``{name: policy}``). Each row: ``{"role", "opponent", "returns",
    "info"}`` with the returns of every role (mean, 95% CI, n) over ``episodes``
    episodes; the other roles play the meta-strategy. For a two-role game the rows
    of one role are the meta-strategy of the other role against each candidate: its
    worst case over the population is the lowest of them.
    """
    from deploy_envs.training.game_baselines import role_baselines

    pop = load_population(folder)
    episodes = check_number("episodes", episodes, low=1, integer=True)
    game = pop.state["game"]
    core = make_core(game, min(num_envs, episodes), pop.state["game_kwargs"])
    sigma = pop.sigma_from_named(pop.state["report"][which])
    meta = {r: pop.mixture(r, s, core) for r, s in zip(pop.roles, sigma)}
    scripted = role_baselines(game, core)
    opponents = dict(opponents or {})
    bad = [r for r in opponents if r not in pop.roles]
    if bad:
        raise ValueError(f"opponents names roles {bad} that {game} does not have; roles: {pop.roles}")
    rows = [{"role": None, "opponent": "meta_strategy",
             **_eval_row(game, meta, episodes, seed, num_envs, core, pop.state["game_kwargs"], info_keys)}]
    for r in pop.roles:
        cands: dict[str, Any] = {}
        for name in pop.names(r):
            cands[f"member:{name}"] = pop.policy(r, name, core)
        for name, p in scripted.get(r, {}).items():
            if name not in pop.names(r):
                cands[f"scripted:{name}"] = p
        for name, p in opponents.get(r, {}).items():
            cands[name] = p
        for name, p in cands.items():
            policies = {**meta, r: p}
            rows.append({"role": r, "opponent": name,
                         **_eval_row(game, policies, episodes, seed, num_envs, core, pop.state["game_kwargs"], info_keys)})
    return rows


def _eval_row(game, policies, episodes, seed, num_envs, core, game_kwargs, info_keys) -> dict[str, Any]:
    res = evaluate_game(game, policies, episodes, seed, num_envs=num_envs, core=core, game_kwargs=game_kwargs, info_keys=info_keys)
    return {"returns": res["returns"], "info": res["info"]}


def population_policies(folder: str | Path, roles: Mapping[str, str] | None = None, core: Any = None) -> dict[str, Any]:
    """``{role: policy}`` from a saved population: ``"meta"`` (the meta-strategy, default), ``"member:NAME"`` or ``"scripted:NAME"``."""
    from deploy_envs.training.game_baselines import role_baselines

    pop = load_population(folder)
    if core is None:
        core = make_core(pop.state["game"], 1, pop.state["game_kwargs"])
    roles = dict(roles or {})
    bad = [r for r in roles if r not in pop.roles]
    if bad:
        raise ValueError(f"roles names {bad}, not roles of {pop.state['game']}: {pop.roles}")
    sigma = pop.sigma_from_named(pop.state["report"]["meta_strategy"])
    out: dict[str, Any] = {}
    for r, s in zip(pop.roles, sigma):
        spec = roles.get(r, "meta")
        kind, _, name = spec.partition(":")
        if spec == "meta":
            out[r] = pop.mixture(r, s, core)
        elif kind == "member" and name in pop.names(r):
            out[r] = pop.policy(r, name, core)
        elif kind == "scripted" and name in role_baselines(pop.state["game"], core)[r]:
            out[r] = role_baselines(pop.state["game"], core)[r][name]
        else:
            raise ValueError(f"roles[{r!r}]={spec!r} must be 'meta', 'member:NAME' (one of {pop.names(r)}) or 'scripted:NAME'")
    return out


def evaluate_population_spec(game_id: str, population: str, kwargs: Mapping[str, Any], *, episodes: int, seed: int,
                             game_kwargs: Mapping[str, Any]) -> dict[str, float]:
    """A scenario row for a population in the zoo: ``return_<role>`` (and its ``_ci95``) and the requested info keys."""
    from deploy_envs.agent_zoo import resolve_agent_folder

    folder = resolve_agent_folder(population)
    pop = load_population(folder)
    if pop.state["game"] != game_id:
        raise ValueError(f"population {population!r} is a population of {pop.state['game']}, not {game_id}")
    extra = set(kwargs) - {"roles", "info"}
    if extra:
        raise ValueError(f"population kwargs {sorted(extra)} are unknown; allowed: roles, info")
    gk = {**pop.state["game_kwargs"], **dict(game_kwargs)}
    core = make_core(game_id, min(16, episodes), gk)
    policies = population_policies(folder, kwargs.get("roles"), core)
    keys = list(kwargs.get("info", []))
    res = evaluate_game(game_id, policies, episodes, seed, core=core, info_keys=keys)
    first = pop.roles[0]
    out: dict[str, float] = {}
    for r, v in res["returns"].items():
        out[f"return_{r}"], out[f"return_{r}_ci95"] = v["mean"], v["ci95"]
    for k in keys:
        v = res["info"][first][k]
        out[k], out[f"{k}_ci95"], out[f"{k}_final"] = v["mean"], v["ci95"], v["final_mean"]
        if v.get("final_ci95") is not None:  # the value at the last step has its own interval over episodes
            out[f"{k}_final_ci95"] = v["final_ci95"]
    return out


__all__ += ["evaluate_population", "evaluate_population_spec", "population_policies", "ship_population", "verify_member"]

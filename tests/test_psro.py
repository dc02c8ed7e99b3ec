"""PSRO, the role adapter and evaluate_game on games with known answers.

Matching pennies and rock-paper-scissors (one simultaneous move, payoffs in
{-1, 0, 1}) have a unique Nash equilibrium, uniform, of value 0; any pure strategy
has exploitability 1 (NashConv 2).
"""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from gymnasium import spaces
from pettingzoo.test import parallel_api_test

from deploy_envs.core.batched import BatchedCore, validate_batch
from deploy_envs.core.views import ParallelGameView
from deploy_envs.training import psro
from deploy_envs.training.game_baselines import Constant, RandomBatch
from deploy_envs.training.roles import Mixture, RoleVecEnv, evaluate_game

RPS = np.array([[0, -1, 1], [1, 0, -1], [-1, 1, 0]], float)
MP = np.array([[1, -1], [-1, 1]], float)


class MatrixCore(BatchedCore):
    """A one-shot two-player zero-sum matrix game as a batched core (``matrix[a0, a1]`` to row, its negation to column)."""

    matrix = RPS
    metadata = {"render_modes": []}

    def __init__(self, num_envs: int = 1, render_mode=None) -> None:
        super().__init__(num_envs, render_mode)
        k0, k1 = self.matrix.shape
        box = spaces.Box(0.0, 1.0, (1,), np.float32)
        self.observation_spaces = {"row": box, "column": box}
        self.action_spaces = {"row": spaces.Discrete(k0), "column": spaces.Discrete(k1)}

    def reset_indices(self, idx, options=None):
        z = np.zeros((len(idx), 1), np.float32)
        return {"row": z, "column": z.copy()}, {"row": {}, "column": {}}

    def validate_actions(self, actions, batch):
        return {a: validate_batch(self.action_spaces[a], actions[a], batch, name=a) for a in ("row", "column")}

    def step_indices(self, idx, actions):
        r = self.matrix[actions["row"], actions["column"]]
        z = np.ones((len(idx), 1), np.float32)
        done = np.ones(len(idx), bool)
        info = {"win": (r > 0).astype(float)}
        return {"row": z, "column": z.copy()}, {"row": r, "column": -r}, done, ~done, {"row": info, "column": dict(info)}

    def state_of(self, idx):
        return np.zeros((len(idx), 2), np.float32)


class RPSCore(MatrixCore):
    matrix = RPS


class MPCore(MatrixCore):
    matrix = MP


class RPSGame(ParallelGameView):
    metadata = {"name": "rps_v0", "render_modes": [], "is_parallelizable": True}
    core_class = RPSCore


class MPGame(ParallelGameView):
    metadata = {"name": "matching_pennies_v0", "render_modes": [], "is_parallelizable": True}
    core_class = MPCore


FAST_PPO = {"learning_rate": 3e-3, "n_epochs": 4, "ent_coef": 0.0}


@pytest.fixture(autouse=True)
def _one_thread():
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def test_tiny_games_are_pettingzoo_games():
    parallel_api_test(RPSGame(), num_cycles=5)
    parallel_api_test(MPGame(), num_cycles=5)


# ------------------------------------------------------------ meta-game algebra
def test_exploitability_of_the_known_equilibrium_is_zero_and_of_a_pure_strategy_is_one():
    payoff = np.stack([RPS, -RPS])
    uniform = [np.full(3, 1 / 3)] * 2
    rock = [np.eye(3)[0]] * 2
    assert psro.exploitability(payoff, uniform) == pytest.approx(0.0, abs=1e-12)
    assert psro.exploitability(payoff, rock) == pytest.approx(1.0)
    assert psro.nash_conv(payoff, rock) == pytest.approx(2.0)
    mp = np.stack([MP, -MP])
    assert psro.exploitability(mp, [np.array([0.5, 0.5])] * 2) == pytest.approx(0.0, abs=1e-12)
    assert psro.exploitability(mp, [np.array([0.8, 0.2]), np.array([0.5, 0.5])]) == pytest.approx(0.3)


@pytest.mark.parametrize("solver", ["nash", "prd"])
def test_meta_solvers_find_the_uniform_equilibrium(solver):
    for m in (RPS, MP):
        sigma = psro.solve_meta(np.stack([m, -m]), solver)
        for s in sigma:
            np.testing.assert_allclose(s, np.full(len(s), 1 / len(s)), atol=0.02)


def test_general_sum_nash_is_checked_and_three_role_prd_runs():
    # battle of the sexes: pure equilibria (0, 0) and (1, 1), one mixed
    a = np.array([[3, 0], [0, 2]], float)
    b = np.array([[2, 0], [0, 3]], float)
    payoff = np.stack([a, b])
    sigma = psro.solve_meta(payoff, "nash")
    assert psro.nash_conv(payoff, sigma) < 1e-6
    # three-player: each role's payoff is its own action (dominant strategy 1)
    p = np.zeros((3, 2, 2, 2))
    for r in range(3):
        p[r] = np.moveaxis(np.broadcast_to(np.array([0.0, 1.0]).reshape(2, 1, 1), (2, 2, 2)), 0, r)
    sigma = psro.solve_meta(p, "auto")
    assert all(s[1] > 0.95 for s in sigma)
    with pytest.raises(ValueError, match="meta_solver"):
        psro.solve_meta(p, "nash")


# ------------------------------------------------------------ role adapter and evaluation
def test_role_vec_env_plays_the_mixture_per_episode_and_resets():
    vec = RoleVecEnv(RPSGame, "row", {"column": Mixture([Constant(0), Constant(1)], [0.5, 0.5])}, num_envs=64, seed=3)
    vec.reset()
    _, rew, dones, infos = vec.step(np.zeros(64, np.int64))  # row plays rock
    assert dones.all() and all("terminal_observation" in i and "episode" in i for i in infos)
    assert set(np.unique(rew)) == {0.0, -1.0}  # rock vs rock ties, rock vs paper loses
    assert 15 < (rew == -1).sum() < 49
    with pytest.raises(ValueError, match="opponents"):
        RoleVecEnv(RPSGame, "row", {"row": Constant(0)}, num_envs=2)
    with pytest.raises(ValueError, match="role"):
        RoleVecEnv(RPSGame, "referee", {"column": Constant(0)}, num_envs=2)


def test_evaluate_game_gives_means_with_intervals_and_is_seeded():
    pols = {"row": RandomBatch(spaces.Discrete(3)), "column": Constant(0)}
    a = evaluate_game(RPSGame, pols, episodes=400, seed=1, num_envs=16, info_keys=("win",))
    b = evaluate_game(RPSGame, {"row": RandomBatch(spaces.Discrete(3)), "column": Constant(0)}, episodes=400, seed=1, num_envs=16)
    assert a["returns"]["row"]["n"] == 400 and a["returns"]["row"]["ci95"] > 0
    assert abs(a["returns"]["row"]["mean"]) < 3 * a["returns"]["row"]["ci95"] + 1e-9  # random vs rock: 0 in expectation
    assert a["returns"]["row"]["mean"] == -a["returns"]["column"]["mean"]
    assert 0.2 < a["info"]["row"]["win"]["mean"] < 0.47
    assert a["returns"] == b["returns"]  # same seed, same result
    exact = evaluate_game(RPSGame, {"row": Constant(1), "column": Constant(0)}, episodes=5, seed=0)
    assert exact["returns"]["row"]["mean"] == 1.0 and exact["returns"]["row"]["ci95"] == 0.0
    with pytest.raises(ValueError, match="missing"):
        evaluate_game(RPSGame, {"row": Constant(1)}, episodes=2)


def test_a_trained_best_response_exploits_a_fixed_strategy(tmp_path):
    """A deliberately exploitable fixed strategy (always rock) is measured as exploitable; the equilibrium is not."""
    rock = {"row": {"rock": Constant(0)}, "column": {"rock": Constant(0)}}
    state = psro.solve(RPSGame, iterations=1, timesteps=1024, out_dir=tmp_path / "rock", seeds=rock, episodes=20,
                       num_envs=16, ppo_kwargs=FAST_PPO, progress=False, plots=False)
    row = state["history"][0]
    assert row["meta_strategy"] == {"row": {"rock": 1.0}, "column": {"rock": 1.0}}
    assert row["exploitability"] > 0.9  # the best responses learned paper: exploitability 1
    uniform = {"row": {"uniform": RandomBatch(spaces.Discrete(3))}, "column": {"uniform": RandomBatch(spaces.Discrete(3))}}
    state = psro.solve(RPSGame, iterations=1, timesteps=1024, out_dir=tmp_path / "uniform", seeds=uniform, episodes=400,
                       num_envs=64, ppo_kwargs=FAST_PPO, progress=False, plots=False)
    assert state["history"][0]["exploitability"] < 0.15  # nothing beats uniform play (sampling noise only)


def test_the_oracle_adds_a_candidate_that_beats_the_population_and_tightens_exploitability(tmp_path):
    """With a PPO budget too small to learn anything, the parametrised candidates still find the exploit of
    'always rock' (paper, exploitability 1); a candidate that beats no member is evaluated but not added."""
    rock = {"row": {"rock": Constant(0)}, "column": {"rock": Constant(0)}}
    cands = {"row": {"paper": Constant(1), "scissors": Constant(2)}, "column": {"scissors": Constant(2)}}
    kw = dict(iterations=1, timesteps=8, seeds=rock, episodes=8, num_envs=8, ppo_kwargs={"learning_rate": 1e-9},
              progress=False, plots=False)
    state = psro.solve(RPSGame, out_dir=tmp_path / "oracle", candidates=cands, **kw)
    row = state["history"][0]
    assert row["oracle"]["row"]["candidate"] == "paper" and row["oracle"]["row"]["added"]
    assert row["oracle"]["row"]["candidate_value"] == 1.0 and row["oracle"]["row"]["best_member_value"] == 0.0
    assert not row["oracle"]["column"]["added"] and row["oracle"]["column"]["candidate_value"] == -1.0
    assert [m["name"] for m in state["population"]["row"]] == ["rock", "br1", "paper"]
    assert [m["name"] for m in state["population"]["column"]] == ["rock", "br1"]
    assert row["regret"]["row"] == 1.0 and row["best_response_value"]["row"] == 1.0
    # the saved population rebuilds the candidate member by name
    pop = psro.load_population(tmp_path / "oracle")
    pop.seeds, pop.candidates = rock, cands
    assert int(np.asarray(pop.policy("row", "paper", RPSCore(1))(np.zeros((1, 1), np.float32))).reshape(-1)[0]) == 1
    # without the oracle the same untrained PPO budget measures a lower exploitability
    plain = psro.solve(RPSGame, out_dir=tmp_path / "plain", candidates=cands, oracle=False, **kw)
    assert "oracle" not in plain["history"][0]
    assert plain["history"][0]["nash_conv"] < row["nash_conv"]
    with pytest.raises(ValueError, match="candidates"):
        psro.solve(RPSGame, out_dir=tmp_path / "bad", candidates={"pitcher": {}}, **kw)


@pytest.mark.parametrize("game,k", [(MPGame, 2), (RPSGame, 3)])
def test_psro_converges_to_the_known_nash(tmp_path, game, k):
    seeds = {"row": {"first": Constant(0)}, "column": {"first": Constant(0)}}
    state = psro.solve(game, iterations=k + 1, timesteps=1024, out_dir=tmp_path, seeds=seeds, episodes=8, num_envs=16,
                       ppo_kwargs=FAST_PPO, progress=False, plots=True)
    report = state["report"]
    pop = psro.load_population(tmp_path)
    pop.seeds = seeds
    sigma = pop.sigma_from_named(report["final_population_meta_strategy"])
    mean = np.array(report["payoff_mean"])
    # mixture over the population's actions: map each member to the action it plays
    for r, role in enumerate(state["roles"]):
        policies = [pop.policy(role, n, game.core_class(1)) for n in report["population"][role]]
        actions = np.array([int(np.asarray(p(np.zeros((1, 1), np.float32))).reshape(-1)[0]) for p in policies])
        mix = np.bincount(actions, weights=sigma[r], minlength=k)
        np.testing.assert_allclose(mix, np.full(k, 1 / k), atol=0.05)
    assert psro.exploitability(mean, sigma) < 0.05
    curve = report["exploitability_per_iteration"]
    assert curve[0] > 0.9 and curve[-1] < 0.1  # exploitability falls from the pure seed to ~0
    assert (tmp_path / "exploitability.png").is_file() and (tmp_path / "payoff.png").is_file()


def test_solve_resumes_from_its_folder_and_refuses_another_game(tmp_path):
    seeds = {"row": {"first": Constant(0)}, "column": {"first": Constant(0)}}
    kw = dict(timesteps=512, out_dir=tmp_path, seeds=seeds, episodes=4, num_envs=8, ppo_kwargs=FAST_PPO, progress=False, plots=False)
    psro.solve(MPGame, iterations=1, **kw)
    first = json.loads((tmp_path / "psro.json").read_text())
    state = psro.solve(MPGame, iterations=2, **kw)
    assert len(state["history"]) == 2 and state["history"][0] == first["history"][0]
    assert [m["name"] for m in state["population"]["row"]] == ["first", "br1", "br2"]
    with pytest.raises(ValueError, match="out_dir"):
        psro.solve(RPSGame, iterations=1, **kw)
    with pytest.raises(ValueError, match="iterations"):
        psro.solve(MPGame, iterations=-1, **kw)


def test_a_copy_of_a_shipped_population_resumes_and_lists_its_new_members(tmp_path):
    """Resuming from a copy of a zoo population (which has a manifest): the new best responses are
    added to the manifest as they are written, so the run loads them; the shipped members stay checked."""
    import shutil

    seeds = {"row": {"first": Constant(0)}, "column": {"first": Constant(0)}}
    kw = dict(timesteps=256, seeds=seeds, episodes=4, num_envs=8, ppo_kwargs=FAST_PPO, progress=False, plots=False)
    psro.solve(MPGame, iterations=1, out_dir=tmp_path / "run", **kw)
    dest = psro.ship_population(tmp_path / "run", "mp-psro", root=tmp_path / "zoo")
    shutil.copytree(dest, tmp_path / "more")
    state = psro.solve(MPGame, iterations=2, out_dir=tmp_path / "more", **kw)
    assert [m["name"] for m in state["population"]["row"]] == ["first", "br1", "br2"]
    manifest = json.loads((tmp_path / "more" / "manifest.json").read_text())
    assert set(manifest) == {"row/br1.zip", "column/br1.zip", "row/br2.zip", "column/br2.zip"}
    psro.load_population(tmp_path / "more").policy("row", "br2", MPCore(1))  # verifies and loads


def test_shipped_population_has_a_card_and_refuses_tampered_members(tmp_path):
    seeds = {"row": {"first": Constant(0)}, "column": {"first": Constant(0)}}
    psro.solve(MPGame, iterations=1, timesteps=256, out_dir=tmp_path / "run", seeds=seeds, episodes=4, num_envs=8,
               ppo_kwargs=FAST_PPO, progress=False, plots=False)
    dest = psro.ship_population(tmp_path / "run", "mp-psro", root=tmp_path / "zoo", outcome={"checked": True})
    card = json.loads((dest / "card.json").read_text())
    assert card["training"]["exploitability_per_iteration"] and card["training"]["payoff_table"]["roles"] == ["row", "column"]
    assert card["training"]["outcome"] == {"checked": True} and (dest / "CARD.md").is_file()
    manifest = json.loads((dest / "manifest.json").read_text())
    assert set(manifest) == {"row/br1.zip", "column/br1.zip"}
    pop = psro.load_population(dest)
    pop.policy("row", "br1", MPCore(1))  # verifies and loads
    blob = (dest / "column" / "br1.zip").read_bytes()
    (dest / "column" / "br1.zip").write_bytes(blob[:-1] + bytes([blob[-1] ^ 1]))
    with pytest.raises(ValueError, match="sha256"):
        psro.load_population(dest).policy("column", "br1", MPCore(1))


@pytest.mark.parametrize("game_id", ["deploy_envs/LendingMarket-v0", "deploy_envs/ExtractionGuard-v0", "deploy_envs/TrojanAudit-v0",
                                     "deploy_envs/PoisoningSanitizer-v0"])
def test_solve_runs_on_every_registered_game(tmp_path, game_id):
    """One PSRO iteration with tiny budgets on each game's test configuration (AttackDefense and
    RobustNavigation run in tests/test_cli.py and the shipped populations)."""
    from deploy_envs.core.registration import GAME_CATALOG

    kwargs = dict(GAME_CATALOG[game_id].test_kwargs)
    state = psro.solve(game_id, iterations=1, timesteps=32, out_dir=tmp_path, game_kwargs=kwargs, episodes=2, num_envs=2,
                       progress=False, plots=False)
    roles = state["roles"]
    assert len(state["history"]) == 1 and all(len(state["population"][r]) >= 2 for r in roles)
    mean = np.array(state["report"]["payoff_mean"])
    assert mean.shape[0] == len(roles) and np.isfinite(mean).all()
    sigma = psro.Population(tmp_path, state).sigma_from_named(state["report"]["meta_strategy"])
    assert all(abs(s.sum() - 1) < 1e-6 for s in sigma)
    if len(roles) > 2:
        assert state["report"]["meta_solver"] == "prd"


def test_a_best_response_keeps_its_last_finite_weights():
    import gymnasium as gym
    from stable_baselines3 import PPO

    model = PPO("MlpPolicy", gym.make("CartPole-v1"), n_steps=32, batch_size=32, device="cpu", seed=0)
    guard = psro._FiniteWeights()
    model.learn(64, callback=guard)
    assert guard.snapshot is not None and not guard.broken
    with torch.no_grad():
        next(model.policy.parameters()).fill_(float("nan"))
    guard.restore_if_needed(model)
    assert all(torch.isfinite(p).all() for p in model.policy.parameters())


def test_game_candidates_are_new_settings_and_pgd_stays_in_the_ball():
    from deploy_envs.core.registration import GAME_CATALOG
    from deploy_envs.training.game_baselines import role_baselines, role_candidates
    from deploy_envs.training.roles import make_core

    eg = "deploy_envs/ExtractionGuard-v0"
    core = make_core(eg, 1, GAME_CATALOG[eg].test_kwargs)
    seeds, cands = role_baselines(eg, core)["guard"], role_candidates(eg, core)["guard"]
    settings = {tuple(np.asarray(p.action).tolist()) for p in cands.values()}
    assert len(settings) == len(cands) == core.G * core.N * core.T - len(seeds)
    assert not settings & {tuple(np.asarray(p.action).tolist()) for p in seeds.values()}
    ad = "deploy_envs/AttackDefense-v0"
    core = make_core(ad, 32, {"n_samples": 2})
    core.rngs = [np.random.default_rng(i) for i in range(32)]  # the same 32 inputs on every run
    cands = role_candidates(ad, core)["attacker"]
    assert set(cands) == {"pgd_standard", "fgsm_robust", "pgd_robust", "pgd_ensemble"}
    obs, _ = core.reset_indices(np.arange(32))
    fgsm = role_baselines(ad, core)["attacker"]["fgsm"](obs["attacker"])
    fooled = {}
    for name, policy in {"fgsm": lambda o: fgsm, **cands}.items():
        a = np.asarray(policy(obs["attacker"]))
        assert a.shape == (32, core.d) and np.abs(a).max() <= 1.0
        x = np.clip(core.x0 + core.epsilon * a, 0, 1).astype(np.float32)
        fooled[name] = float((core.robust.predict(x) != core.true_label).mean())
    # white-box PGD on the robust model fools it at least as often as FGSM on the standard model's gradient
    assert fooled["pgd_robust"] >= fooled["fgsm"] and fooled["pgd_ensemble"] >= fooled["fgsm"]

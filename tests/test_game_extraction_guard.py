"""ExtractionGuard-v0: PettingZoo conformance, multi-step seed determinism, batch/single agreement, the guard's levers, arguments."""
from __future__ import annotations

import math
from functools import partial

import numpy as np
import pytest

from deploy_envs.core.registration import GAME_CATALOG, make_game
from deploy_envs.testing import (
    check_game_api,
    check_game_batch_matches_single,
    check_game_determinism,
    random_joint_actions,
)
from deploy_envs.topics.extraction.baselines import JacobianAugmentation, Knockoff
from deploy_envs.topics.extraction.extraction_guard import (
    AGENTS,
    ExtractionGuardCore,
    extractor_seat,
)

parallel_env = partial(make_game, "deploy_envs/ExtractionGuard-v0")

GAME_ID = "deploy_envs/ExtractionGuard-v0"
SMALL = dict(GAME_CATALOG[GAME_ID].test_kwargs)


# ---------------------------------------------------------------- conformance
def test_registered_and_parallel_api():
    assert GAME_ID in GAME_CATALOG and GAME_CATALOG[GAME_ID].topic == "model-API attacks"
    assert check_game_api(GAME_ID, SMALL, num_cycles=10).possible_agents == ["extractor", "guard"]


def test_spaces_episode_end_render_and_state():
    env = parallel_env(render_mode="ansi", **SMALL)
    core = env.core
    m, d, K = core.batch_size, core.d, core.K
    assert env.action_space("extractor").shape == (m * d,)
    assert list(env.action_space("guard").nvec) == [4, 3, 3]
    assert env.observation_space("extractor").shape == (m * K + 2 * m + 1,)
    assert env.observation_space("guard").shape == (4 + 3 + 3 + 6,)
    for a in AGENTS:
        assert env.observation_space(a).dtype == np.float32
    obs, _ = env.reset(seed=1)
    assert obs["extractor"][-1] == 1.0 and obs["guard"][-1] == 0.0 and not obs["guard"][:10].any()
    acts = random_joint_actions(env, 1)
    for _ in range(core.rounds):
        obs, rew, term, trunc, infos = env.step(next(acts))
        for a in AGENTS:
            assert env.observation_space(a).contains(obs[a])
        assert "fidelity" in env.render()
        # the guard's reward is the benign utility minus the extractor's fidelity gain
        assert math.isclose(rew["guard"], infos["guard"]["benign_utility"] - rew["extractor"], abs_tol=1e-12)
    assert all(term.values()) and not any(trunc.values()) and env.agents == []
    assert obs["extractor"][-1] == 0.0 and obs["guard"][-1] == 1.0
    assert infos["extractor"]["queries"] == core.max_queries
    with pytest.raises(RuntimeError):
        env.step(next(acts))
    assert env.state().shape == env.state_space.shape


def test_observation_and_info_hold_no_victim_internals():
    env = parallel_env(**SMALL)
    env.reset(seed=0)
    _, _, _, _, infos = env.step(next(random_joint_actions(env, 0)))
    allowed = {"fidelity", "test_accuracy", "benign_utility", "extractor_answered", "benign_answered", "extractor_flagged",
               "benign_flagged", "granularity", "noise", "threshold", "extractor_w", "benign_w", "queries", "round"}
    for a in AGENTS:
        assert set(infos[a]) == allowed
        assert all(np.ndim(v) == 0 for v in infos[a].values())


# ---------------------------------------------------------------- determinism
def test_multi_step_seed_determinism():
    # 10 rounds of 4 (three episodes); another seed: another surrogate initialisation, benign stream and noise
    check_game_determinism(GAME_ID, SMALL, seed=5, steps=10, action_seed=9, min_episodes=3)


def test_batched_core_agrees_with_single_copies():
    n = 3

    def noise_in_copy_0(actions, core):  # exercise per-copy noise
        actions["guard"][0, 1] = 2

    # two episodes; batched kernels differ from batch-1 ones in the last bits: observations and
    # rewards within 1e-5, info entries (fidelity moves in steps of 1/holdout) within 1e-6
    ended = check_game_batch_matches_single(GAME_ID, SMALL, num_envs=n, seed=20, steps=2 * SMALL["rounds"], edit_actions=noise_in_copy_0,
                                            atol=1e-5, reward_atol=1e-5, info_atol=1e-6)
    assert ended == 2 * n


# ---------------------------------------------------------------- the guard's levers
def play(core: ExtractionGuardCore, agent, guard, seed: int = 0) -> dict[str, float]:
    """A baseline extractor against a fixed guard setting for one episode in every copy; final-round means."""
    n = core.num_envs
    core.seed(seed)
    agent.setup(extractor_seat(core))
    idx = np.arange(n)
    obs, _ = core.reset_indices(idx)
    start = np.ones(n, bool)
    for _ in range(core.rounds):
        act = agent.act(obs["extractor"], start)
        start[:] = False
        obs, _, _, _, info = core.step_indices(idx, core.validate_actions({"extractor": act, "guard": np.tile(guard, (n, 1))}, n))
    return {k: float(np.mean(v)) for k, v in info["guard"].items()}


@pytest.fixture(scope="module")
def core():
    return ExtractionGuardCore(num_envs=4, rounds=20, batch_size=10, benign_queries=10, holdout=300)


def test_noise_lowers_fidelity_and_costs_benign_utility(core):
    # measured (8 copies, full holdout): knockoff fidelity 0.93 open vs 0.82 with noise 0.2; utility 1.0 vs 0.58
    open_ = play(core, Knockoff(seed=0), [0, 0, 0])
    noisy = play(core, Knockoff(seed=0), [0, 2, 0])
    label = play(core, Knockoff(seed=0), [3, 0, 0])
    assert open_["fidelity"] >= 0.8, open_
    assert noisy["fidelity"] < open_["fidelity"] - 0.05, (open_, noisy)
    assert open_["benign_utility"] > 0.99 and noisy["benign_utility"] < 0.8
    # label-only answers keep the top class: almost no utility lost for a confident victim
    assert label["benign_utility"] > 0.98
    assert not open_["extractor_flagged"] and not open_["benign_flagged"]


def test_detection_threshold_flags_jacobian_attacker_not_natural_queries(core):
    # measured (8 copies): W of the Jacobian stream ~0.53, of Knockoff ~0.98, of the benign stream ~0.96
    jac = play(core, JacobianAugmentation(seed=0), [0, 0, 1])  # delta 0.9
    knock = play(core, Knockoff(seed=0), [0, 0, 1])
    assert jac["extractor_flagged"] == 1.0 and jac["extractor_answered"] == 0.0, jac
    assert jac["extractor_w"] < 0.8
    assert knock["extractor_flagged"] == 0.0 and knock["extractor_answered"] == core.batch_size
    assert jac["benign_flagged"] == 0.0 and jac["benign_utility"] > 0.99
    # detection off: the same stream is answered
    off = play(core, JacobianAugmentation(seed=0), [0, 0, 0])
    assert off["extractor_flagged"] == 0.0 and off["extractor_answered"] == core.batch_size


# ---------------------------------------------------------------- arguments
@pytest.mark.parametrize(
    "kwargs, name",
    [
        ({"granularities": ("probabilities", "logits")}, "granularities"),
        ({"granularities": ()}, "granularities"),
        ({"granularities": ("label", "label")}, "granularities"),
        ({"noise_levels": (0.0, -0.1)}, "noise_levels"),
        ({"noise_levels": ()}, "noise_levels"),
        ({"thresholds": (0.0, 1.5)}, "thresholds"),
        ({"rounds": 0}, "rounds"),
        ({"batch_size": 0}, "batch_size"),
        ({"benign_queries": 0}, "benign_queries"),
        ({"surrogate": "tree"}, "surrogate"),
        ({"utility_weight": -1.0}, "utility_weight"),
        ({"top_k": 11}, "top_k"),
        ({"holdout": 0}, "holdout"),
        ({"render_mode": "video"}, "render_mode"),
    ],
)
def test_bad_arguments_raise_value_error_naming_them(kwargs, name):
    with pytest.raises(ValueError, match=name):
        parallel_env(**kwargs)


def test_out_of_space_actions_are_refused_without_changing_state():
    env = parallel_env(**SMALL)
    env.reset(seed=0)
    n = env.core.batch_size * env.core.d
    ok_ext, ok_guard = np.zeros(n, np.float32), np.zeros(3, np.int64)
    bad = [
        ({"extractor": np.full(n, 1.5, np.float32), "guard": ok_guard}, "extractor"),
        ({"extractor": np.full(n, np.nan, np.float32), "guard": ok_guard}, "extractor"),
        ({"extractor": np.zeros(n + 1, np.float32), "guard": ok_guard}, "extractor"),
        ({"extractor": ok_ext, "guard": np.array([4, 0, 0])}, "guard"),
        ({"extractor": ok_ext, "guard": np.array([0, -1, 0])}, "guard"),
        ({"extractor": ok_ext}, "guard"),
    ]
    for actions, name in bad:
        with pytest.raises(ValueError, match=name):
            env.step(actions)
    assert env.core.round[0] == 0 and env.core.queries[0] == 0 and env.agents == list(AGENTS)
    obs, *_ = env.step({"extractor": ok_ext, "guard": ok_guard})
    assert obs["guard"][-1] == pytest.approx(1 / env.core.rounds)


def test_extractor_seat_refuses_other_games():
    ad_env = partial(make_game, "deploy_envs/AttackDefense-v0")

    with pytest.raises(ValueError, match="ExtractionGuard"):
        extractor_seat(ad_env(rounds=2, n_samples=2))

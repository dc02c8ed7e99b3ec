"""Generic game conformance: every registered game gets these by being registered (as envs do in test_conformance)."""
from __future__ import annotations

import pytest

from deploy_envs.core.games import GameCore
from deploy_envs.core.registration import GAME_CATALOG, make_game
from deploy_envs.core.views import ParallelGameView
from deploy_envs.testing import check_game_api, check_game_batch_matches_single, check_game_determinism

GAME_IDS = sorted(GAME_CATALOG)


def kw(game_id):
    return dict(GAME_CATALOG[game_id].test_kwargs)


#: settings under which a game's randomness depends on its seed, where its defaults are deterministic
#: (indiscriminate poisoning draws nothing at random; the targeted goal draws its targets)
SEEDED = {"deploy_envs/PoisoningSanitizer-v0": {"goal": "targeted"}}


def test_the_game_catalog_is_not_empty():
    assert len(GAME_IDS) >= 6


@pytest.mark.parametrize("game_id", GAME_IDS)
def test_game_is_a_generated_view_of_a_game_core(game_id):
    game = make_game(game_id, **kw(game_id))
    assert isinstance(game, ParallelGameView) and isinstance(game.core, GameCore)
    assert type(game).__module__ == "deploy_envs.core.registration"  # generated, not hand-written
    assert game.metadata["name"].endswith("_v0") and game.possible_agents == list(game.core.roles)


@pytest.mark.parametrize("game_id", GAME_IDS)
def test_game_passes_pettingzoo_api_test(game_id):
    check_game_api(game_id, kw(game_id), num_cycles=10)


@pytest.mark.parametrize("game_id", GAME_IDS)
def test_game_is_deterministic_under_its_seed(game_id):
    check_game_determinism(game_id, {**kw(game_id), **SEEDED.get(game_id, {})}, seed=3, steps=8, action_seed=4, min_episodes=0)


@pytest.mark.parametrize("game_id", GAME_IDS)
def test_game_batch_matches_single_games(game_id):
    check_game_batch_matches_single(game_id, kw(game_id), num_envs=2, seed=6, steps=6)


def test_unknown_game_kwargs_are_refused_with_the_valid_ones():
    with pytest.raises(ValueError, match="allowed:.*epsilon"):
        make_game("deploy_envs/AttackDefense-v0", epsln=0.3)

"""Scenarios: YAML recipes that reproduce known results, and the runner that measures and checks them.

The shipped scenarios are the ``*.yaml`` files of this package (``deploy-envs run quickstart``
runs ``quickstart.yaml``); a path to a file of your own works too. The format and the
runner are in :mod:`deploy_envs.scenarios.runner`.
"""
from deploy_envs.scenarios.runner import (
    Scenario,
    ScenarioError,
    ScenarioResult,
    build_agent,
    load_scenario,
    parse_expectation,
    resolve_scenario,
    run_scenario,
    shipped_scenarios,
    shipped_scenarios_dir,
    train_scenario_agent,
)

__all__ = [
    "Scenario",
    "ScenarioError",
    "ScenarioResult",
    "build_agent",
    "load_scenario",
    "parse_expectation",
    "resolve_scenario",
    "run_scenario",
    "shipped_scenarios",
    "shipped_scenarios_dir",
    "train_scenario_agent",
]

"""TrainingControl-v0's reproduced results: random labels (Zhang et al. 2017), early stopping under label noise, the PPO scheduler.

Each test runs the shipped scenario with fewer episodes (``train="never"``) and checks the
scenario's own expectations plus regression thresholds set below the measured values.
"""
from __future__ import annotations


from deploy_envs.scenarios import load_scenario, run_scenario
from deploy_envs.scenarios import shipped_scenarios_dir

SCN = shipped_scenarios_dir()


def run(name, episodes, agents=None):
    result = run_scenario(load_scenario(SCN / name), episodes=episodes, train="never", agents=agents)
    assert result.checks, "no expectation was checked"
    failed = [f"{c.expression} ({c.left:.3f} vs {c.right:.3f})" for c in result.checks if not c.passed]
    assert not failed, f"{name}: {failed}"
    return result


def test_random_labels_are_memorized_slowly_and_do_not_generalize():
    r = run("training_control_random_labels.yaml", episodes=6)
    rand = {"random_labels": "True"}
    true = {"random_labels": "False"}
    # measured (16 episodes): train 0.999, test 0.091, 970 vs 55 steps to 95% training accuracy
    assert r.lookup("constant", rand, "train_accuracy") >= 0.97
    assert r.lookup("constant", rand, "hidden_performance") < 0.14
    assert r.lookup("constant", true, "hidden_performance") > 0.9
    assert r.lookup("constant", rand, "steps_to_fit") > 8 * r.lookup("constant", true, "steps_to_fit")


def test_stopping_on_validation_beats_training_to_convergence_under_label_noise():
    r = run("training_control_label_noise.yaml", episodes=6)
    noisy = {"label_noise": "0.4"}
    # measured (16 episodes): converge train 0.9995 test 0.587; early stopping test 0.763; checkpoint 0.758
    conv = r.lookup("converge", noisy, "hidden_performance")
    assert r.lookup("converge", noisy, "train_accuracy") > 0.97
    assert r.lookup("early_stopping", noisy, "hidden_performance") > conv + 0.1
    assert r.lookup("converge", noisy, "early_stopping_accuracy") > conv + 0.1
    assert r.lookup("early_stopping", noisy, "train_accuracy") < 0.9  # it stopped before memorizing the noise


def test_shipped_ppo_scheduler_beats_random_search_on_hidden_test_accuracy():
    """The shipped SB3 agent (agents/training-control-ppo) loads and acts through the scenario."""
    r = run("training_control_schedulers.yaml", episodes=8, agents=["ppo", "random_search"])
    # measured (64 episodes): PPO 0.926 test accuracy, return 0.847; random search 0.806, return 0.716
    ppo = r.lookup("ppo", {}, "hidden_performance")
    assert ppo > 0.9 and ppo > r.lookup("random_search", {}, "hidden_performance") + 0.05
    assert r.lookup("ppo", {}, "diverged") == 0.0

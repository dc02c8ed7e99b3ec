"""Cross-checks against the IBM Adversarial Robustness Toolbox (ART, Nicolae et al. 2018).

ART is the reference implementation the project's attacks and detectors are held
to (it is in the ``test`` and ``robustness`` extras). Each test runs ours and ART's
at the same budget on the same small set of shipped-model inputs and compares:

* attacks (FGSM, PGD, Square; direct and driven through ``Evasion-v0``): success
  rates within a stated tolerance, and for the deterministic gradient attacks
  agreement input by input;
* APGD (ours, in :func:`deploy_envs.metrics.robustness.apgd_attack`) against ART's
  ``AutoProjectedGradientDescent``;
* spectral signatures and activation clustering against ART's
  ``SpectralSignatureDefense`` and ``ActivationDefence`` on one BadNets training set;
* Neural Cleanse: ART's ``NeuralCleanse`` wraps ``KerasNeuralCleanse`` and needs a
  Keras/TensorFlow model, so it cannot run on the suite's PyTorch victims; the test
  checks that this is still so (when ART gains a PyTorch Neural Cleanse it fails, and
  the real comparison should replace it).

Where the two differ, the reason is given in the test's docstring.
"""
from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
import torch
from art.attacks.evasion import (
    AutoProjectedGradientDescent,
    FastGradientMethod,
    ProjectedGradientDescent,
    SquareAttack as ARTSquare,
)
from art.defences.detector.poison import ActivationDefence, SpectralSignatureDefense
from art.estimators.classification import PyTorchClassifier
from gymnasium.vector import AutoresetMode

import deploy_envs  # noqa: F401  (registers the envs)
from deploy_envs.core.agents import make_baseline
from deploy_envs.data import load_dataset
from deploy_envs.metrics.robustness import apgd_attack, pgd_attack, square_attack
from deploy_envs.models.zoo import load_model

ENV = "deploy_envs/Evasion-v0"
N = 64


def art_classifier(model: torch.nn.Module, shape=(1, 8, 8), classes: int = 10) -> PyTorchClassifier:
    return PyTorchClassifier(model, loss=torch.nn.CrossEntropyLoss(), input_shape=shape, nb_classes=classes, clip_values=(0.0, 1.0))


@pytest.fixture(scope="module")
def digits():
    return load_dataset("digits")


def correct_inputs(model, ds, n=N):
    """The first ``n`` test inputs ``model`` classifies correctly (the env's attack pool)."""
    with torch.no_grad():
        pred = model(torch.as_tensor(ds.x_test)).argmax(1).numpy()
    idx = np.flatnonzero(pred == ds.y_test)[:n]
    return idx, ds.x_test[idx], ds.y_test[idx]


def fooled(model, x_adv, y) -> np.ndarray:
    with torch.no_grad():
        return model(torch.as_tensor(np.asarray(x_adv, np.float32))).argmax(1).numpy() != y


def env_success(baseline: str, idx: np.ndarray, env_kwargs: dict) -> np.ndarray:
    """Success per input ``idx[i]`` of one episode of ``baseline`` (seed 0) in copy ``i`` of ``Evasion-v0``."""
    venv = gym.make_vec(ENV, num_envs=len(idx), autoreset_mode=AutoresetMode.SAME_STEP, **env_kwargs)
    agent = make_baseline(baseline, ENV, seed=0)
    agent.setup(venv)
    obs, _ = venv.reset(seed=0, options={"index": idx})
    start = np.ones(len(idx), bool)
    success = np.zeros(len(idx), bool)
    finished = np.zeros(len(idx), bool)
    while not finished.all():
        obs, _, terminated, truncated, info = venv.step(agent.act(obs, start))
        start = terminated | truncated
        for i in np.flatnonzero(start & ~finished):
            success[i] = info["final_info"]["success"][i]  # SAME_STEP autoreset: the last step's info
            finished[i] = True
    venv.close()
    return success


# ----------------------------------------------------------------- attacks
@pytest.mark.parametrize("victim, eps", [("digits-standard", 0.1), ("digits-madry", 0.2)])
def test_fgsm_matches_art_fast_gradient_method(digits, victim, eps):
    """FGSM is deterministic: ours (one PGD step of size eps from the clean input, and the
    env's ``fgsm`` baseline in ``set`` mode) and ART's ``FastGradientMethod`` must fool the
    same inputs, up to float ties of the gradient sign (tolerance: 2 of 64 inputs; measured:
    0 disagreements on either model, ART fooling 37.5% of the standard model's inputs at 0.1
    and 10.9% of the adversarially trained model's at 0.2)."""
    model = load_model(victim)
    idx, x, y = correct_inputs(model, digits)
    art = fooled(model, FastGradientMethod(art_classifier(model), eps=eps).generate(x=x, y=y), y)
    ours = fooled(model, pgd_attack(model, torch.as_tensor(x), torch.as_tensor(y), epsilon=eps, steps=1, step_size=eps), y)
    env = env_success("fgsm", idx, {"victim": victim, "epsilon": eps, "threat_model": "white_box", "action_mode": "set", "max_queries": 1})
    assert 0.05 < art.mean() < 0.95  # a budget where the comparison means something
    assert (ours != art).sum() <= 2
    assert (env != art).sum() <= 2


@pytest.mark.parametrize("victim, eps", [("digits-standard", 0.1), ("digits-madry", 0.2)])
def test_pgd_matches_art_projected_gradient_descent(digits, victim, eps):
    """20-step PGD, step 2.5 * eps / 20 = 0.125 * eps, no random start: ours (direct), the
    env's ``pgd`` baseline (``step_size=0.125``, 20 queries) and ART's
    ``ProjectedGradientDescent`` (``num_random_init=0``) run the same iteration. The env
    stops an episode at its first success, which cannot turn a success into a failure;
    ART keeps iterating and may leave the misclassified region again (it returns the
    last iterate), so the env may count a few more successes. Tolerance: 3 of 64 (measured:
    0 disagreements; 50.0% fooled on the standard model at 0.1, 17.2% on the adversarially
    trained one at 0.2, by all three)."""
    model = load_model(victim)
    idx, x, y = correct_inputs(model, digits)
    art_attack = ProjectedGradientDescent(
        art_classifier(model), eps=eps, eps_step=0.125 * eps, max_iter=20, num_random_init=0, verbose=False
    )
    art = fooled(model, art_attack.generate(x=x, y=y), y)
    ours = fooled(model, pgd_attack(model, torch.as_tensor(x), torch.as_tensor(y), epsilon=eps, steps=20), y)
    env = env_success("pgd", idx, {"victim": victim, "epsilon": eps, "threat_model": "white_box", "step_size": 0.125, "max_queries": 20})
    assert 0.05 < art.mean() < 0.95
    assert (ours != art).sum() <= 3
    assert (env != art).sum() <= 3
    assert env.sum() >= ours.sum() - 1  # early stopping only keeps successes


def test_square_matches_art_square_attack(digits):
    """Square attack, linf, 200 queries, same ``p_init`` (0.05), on the standard model at
    eps 0.1. A random search: the inputs broken differ from run to run, so only the
    success rates are compared. ART's implementation draws one window per query for
    the whole batch, ours one per input; tolerance 0.15 on 64 inputs (about two
    binomial standard deviations at p = 0.5)."""
    model = load_model("digits-standard")
    idx, x, y = correct_inputs(model, digits)
    np.random.seed(0)
    art_attack = ARTSquare(art_classifier(model), eps=0.1, max_iter=200, p_init=0.05, nb_restarts=1, verbose=False)
    art = fooled(model, art_attack.generate(x=x, y=y), y).mean()
    _, direct = square_attack(model, torch.as_tensor(x), torch.as_tensor(y), epsilon=0.1, queries=200, p_init=0.05,
                              generator=torch.Generator().manual_seed(0))
    env = env_success("square", idx, {"victim": "digits-standard", "epsilon": 0.1, "threat_model": "scores", "action_mode": "set", "max_queries": 200})
    assert 0.1 < art < 0.95
    assert abs(direct.float().mean().item() - art) <= 0.15
    assert abs(env.mean() - art) <= 0.15


@pytest.mark.parametrize("loss, art_loss", [("ce", "cross_entropy"), ("dlr", "difference_logits_ratio")])
def test_apgd_matches_art_auto_projected_gradient_descent(digits, loss, art_loss):
    """APGD, 100 steps, one random start, first step 2 * eps, on the adversarially trained
    model at eps 0.2 (where the attacks separate). Both follow Croce & Hein 2020's
    Algorithm 1; random starts and ART's extra restart bookkeeping differ, so robust
    accuracies are compared within 0.06 on 96 inputs (measured: CE 0.708 ours vs 0.729 ART,
    DLR 0.688 vs 0.667)."""
    model = load_model("digits-madry")
    x, y = digits.x_test[:96], digits.y_test[:96]
    art_attack = AutoProjectedGradientDescent(
        art_classifier(model), eps=0.2, eps_step=0.4, max_iter=100, nb_random_init=1, loss_type=art_loss, batch_size=128, verbose=False
    )
    art_robust = (~fooled(model, art_attack.generate(x=x, y=y), y)).mean()
    _, f = apgd_attack(model, torch.as_tensor(x), torch.as_tensor(y), epsilon=0.2, steps=100, loss=loss,
                       generator=torch.Generator().manual_seed(0))
    ours_robust = (~f.numpy()).mean()
    assert 0.2 < art_robust < 0.95
    assert abs(ours_robust - art_robust) <= 0.06


# ---------------------------------------------------------------- detectors
@pytest.fixture(scope="module")
def badnets_set():
    """One BadNets training set of ``Backdoor-v0`` (3% budget, white 3x3 corner patch, target 0),
    its victim MLP's hidden representations, and that hidden layer as a torch module."""
    from deploy_envs.topics.backdoor import triggers

    env = gym.make("deploy_envs/Backdoor-v0", budget=0.03, target_class=0, patch_size=3, position="free")
    core = env.unwrapped.core
    obs, _ = env.reset(seed=0)
    agent = make_baseline("badnets", "deploy_envs/Backdoor-v0")
    agent.setup(env)
    pattern, mask, _ = core.decode(agent.act(obs[None], np.ones(1, bool)))
    pts = core.order[0, : core.budget_points]  # the points the env poisons, as in its step
    x, y = core.x_train.copy(), core.y_train.copy()
    x[pts] = triggers.apply(core.x_train[pts], pattern, mask)[0]
    y[pts] = 0
    poisoned = np.zeros(len(y), bool)
    poisoned[pts] = True
    xt, yt = torch.as_tensor(x.reshape(len(y), -1)), torch.as_tensor(y)
    params = core.mlp.train(xt[None], yt[None])
    reps = core.mlp.forward(params, xt[None])[0]
    hidden = torch.nn.Sequential(torch.nn.Linear(xt.shape[1], params[0].shape[2]), torch.nn.ReLU())
    with torch.no_grad():
        hidden[0].weight.copy_(params[0][0].T)
        hidden[0].bias.copy_(params[1][0, 0])
        assert torch.allclose(hidden(xt), reps[0], atol=1e-5)
    env.close()
    return dict(x=xt.numpy(), y=y, poisoned=poisoned, reps=reps, hidden=hidden, eps_points=core.eps_points)


def hidden_classifier(s) -> PyTorchClassifier:
    """ART's defences read the activations of the classifier's last layer (for a PyTorch
    ``Sequential`` that would be the logits); the victim's hidden layer is given as the
    classifier, so ART and we screen the same representation (Tran et al. and Chen et al.
    use the penultimate layer)."""
    return PyTorchClassifier(s["hidden"], loss=torch.nn.CrossEntropyLoss(), input_shape=(s["x"].shape[1],), nb_classes=10)


def test_spectral_signatures_flag_the_same_poison_as_art(badnets_set):
    """Same representations, same budget: ours flags the ``1.5 * 43`` highest-scoring points
    of each class; ART flags the top ``1.5 * expected_pp_poison`` share of each class, so
    ``expected_pp_poison`` is set to 43 / (size of the target class) to flag the same
    number there. Both catch (nearly) all the poison (measured: ours 42/43, ART 43/43).
    They disagree on which clean points of the target class fill the rest of the quota
    (Jaccard 0.48 over the flagged target-class points): ART scores ``|v . r|`` with the
    *uncentred* representation ``r`` (``spectral_signature_scores`` centres only to find
    ``v``), while Tran et al.'s Algorithm 1 and ours score ``(v . (r - mean))^2``; with
    ReLU features the mean has a large component along ``v``, which reorders the clean
    points near the centre. In the other classes the quotas differ by design (a share vs
    a count), so only the poison and the target class are compared."""
    from deploy_envs.topics.backdoor.detectors import detect

    s = badnets_set
    y, poisoned = s["y"], s["poisoned"]
    ours = detect("spectral", s["reps"], torch.as_tensor(y)[None], 10, s["eps_points"])[0].numpy()
    target = y == 0
    art = SpectralSignatureDefense(
        hidden_classifier(s), s["x"], np.eye(10)[y], batch_size=512, eps_multiplier=1.5,
        expected_pp_poison=s["eps_points"] / target.sum(),
    )
    _, is_clean = art.detect_poison()
    art = np.asarray(is_clean) == 0
    n = poisoned.sum()
    assert abs(int((ours & target).sum()) - int((art & target).sum())) <= 2  # same quota in the target class
    ours_caught, art_caught = (ours & poisoned).sum() / n, (art & poisoned).sum() / n
    assert ours_caught >= 0.9 and art_caught >= 0.9
    assert abs(ours_caught - art_caught) <= 0.05
    # the disagreement is the centring: ART's score on the centred representations gives ours
    reps = s["reps"][0].double().numpy()[target]
    centred = reps - reps.mean(0)
    v = np.linalg.svd(centred, full_matrices=False)[2][0]
    ours_scores = (centred @ v) ** 2
    art_scores = np.abs(reps @ v)
    k = int((ours & target).sum())
    top_centred = set(np.argsort(-ours_scores)[:k])
    assert top_centred == set(np.flatnonzero((ours & target)[target]))
    top_uncentred = set(np.argsort(-art_scores)[:k])
    assert len(top_uncentred & top_centred) < k  # the two scores rank the clean points differently


def test_activation_clustering_flags_the_same_poison_as_art(badnets_set):
    """Same hidden representations, PCA to 10 dimensions, two clusters per class. In the
    target class both put exactly the poisoned points in the smaller cluster (measured:
    Jaccard 1.0, 43 points each). Elsewhere they differ by design: ours flags the smaller
    cluster only when it holds less than 35% of its class (the "relative size" rule),
    while ART's ``cluster_analysis="smaller"`` flags the smaller cluster of *every* class
    (about 500 points here, a third of the clean ones). ART's own ``"relative-size"``
    analysis would be the like-for-like rule, but in ART 1.20 it raises on numpy arrays
    (``cluster_id in poison_clusters`` on an empty array in ``analyze_by_relative_size``),
    so it is applied here to ART's clusters by hand: then the target class agrees point
    for point. In clean classes the two k-means runs can stop in different local optima
    (ART's ``MiniBatchKMeans`` starts from random centres, ours from the sign of the first
    principal component), so a clean class split 30/70 by one may be split 45/55 by the
    other (measured with seed 0: ART flags 4 clean clusters, 11% of clean points; ours 2,
    4.7%); only the false-alarm rate is bounded there."""
    from deploy_envs.topics.backdoor.detectors import detect

    s = badnets_set
    y, poisoned = s["y"], s["poisoned"]
    ours = detect("activation_clustering", s["reps"], torch.as_tensor(y)[None], 10, s["eps_points"])[0].numpy()
    defence = ActivationDefence(hidden_classifier(s), s["x"], np.eye(10)[y])
    np.random.seed(0)  # ART's MiniBatchKMeans draws from numpy's global generator
    _, is_clean = defence.detect_poison(nb_clusters=2, nb_dims=10, reduce="PCA", cluster_analysis="smaller")
    art_smaller = np.asarray(is_clean) == 0
    target = y == 0
    both = (ours & art_smaller & target).sum()
    either = ((ours | art_smaller) & target).sum()
    assert both / either >= 0.9
    assert (ours & poisoned).sum() / poisoned.sum() >= 0.9
    assert (art_smaller & poisoned).sum() / poisoned.sum() >= 0.9
    # the relative-size rule applied to ART's clusters: smaller cluster flagged when < 35% of its class
    art_rel = np.zeros(len(y), bool)
    for c, clusters in enumerate(defence.clusters_by_class):
        members = np.flatnonzero(y == c)
        clusters = np.asarray(clusters)
        sizes = np.bincount(clusters, minlength=2)
        small = int(np.argmin(sizes))
        if sizes[small] / len(members) < 0.35:
            art_rel[members[clusters == small]] = True
    assert np.array_equal((ours & target), (art_rel & target))  # the poison, exactly
    clean = ~poisoned
    assert (ours & clean).mean() < 0.15 and (art_rel & clean).mean() < 0.15
    assert art_smaller.sum() > 2 * art_rel.sum()  # "smaller" flags a cluster in every class


# ---------------------------------------------------------------- Neural Cleanse
def test_art_neural_cleanse_cannot_run_on_pytorch_victims():
    """ART 1.20's ``NeuralCleanse`` transformer hands the classifier's model to
    ``KerasNeuralCleanse``, which is written against Keras/TensorFlow; there is no PyTorch
    Neural Cleanse in ART, and the suite's trojaned MLPs (TrojanDetection-v0's population)
    are PyTorch. So the target-class cross-check cannot run; this test pins that fact
    (it fails once ART accepts a PyTorch classifier, and the comparison of recovered
    target classes should then replace it). Our Neural Cleanse's target recovery is
    checked against the population's known targets in ``tests/test_trojan_reproduced.py``."""
    from art.defences.transformer.poisoning import NeuralCleanse

    model = torch.nn.Sequential(torch.nn.Linear(64, 16), torch.nn.ReLU(), torch.nn.Linear(16, 10))
    clf = PyTorchClassifier(model, loss=torch.nn.CrossEntropyLoss(), input_shape=(64,), nb_classes=10, clip_values=(0.0, 1.0))
    with pytest.raises(Exception) as err:
        NeuralCleanse(clf)(clf, steps=1)
    assert not isinstance(err.value, AssertionError)

"""Robustness measures and the plain-torch reference attacks they use.

:func:`pgd_attack` is the direct batched PGD (Madry et al. 2018) in plain torch:
it is used for adversarial training and as the yardstick the env-driven PGD
baseline is benchmarked against; :func:`robust_accuracy` is PGD-20, quoted only
beside the strong figure.

:func:`strong_evaluation` is the evaluation every robust accuracy the project
reports comes from: an AutoAttack-style ensemble (Croce & Hein 2020) of APGD on
the cross-entropy with random restarts, APGD on the targeted DLR loss towards
the top classes, and the score-based Square attack (Andriushchenko et al. 2020),
worst case per input over attacks and restarts, with the settings stated in its
result. APGD and Square are written here in batched torch (the base install needs
no extra); ``tests/test_art_crosscheck.py`` checks them against ART's
``AutoProjectedGradientDescent`` and ``SquareAttack`` (the ``robustness`` extra).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from deploy_envs.core.rendering import save_figure
from deploy_envs.core.validation import check_choice, check_number, check_positive


def project(delta: torch.Tensor, epsilon: float, norm: str) -> torch.Tensor:
    """Project a batch of perturbations onto the ``norm`` ball of radius ``epsilon``."""
    if norm == "linf":
        return delta.clamp(-epsilon, epsilon)
    flat = delta.flatten(1)
    norms = flat.norm(dim=1, keepdim=True).clamp_min(1e-12)
    factor = (epsilon / norms).clamp(max=1.0)
    return (flat * factor).view_as(delta)


def ascent_direction(grad: torch.Tensor, norm: str) -> torch.Tensor:
    """Steepest-ascent direction of unit size in ``norm`` (sign for linf, normalized for l2)."""
    if norm == "linf":
        return grad.sign()
    flat = grad.flatten(1)
    return (flat / flat.norm(dim=1, keepdim=True).clamp_min(1e-12)).view_as(grad)


def pgd_attack(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    *,
    epsilon: float,
    steps: int = 10,
    step_size: float | None = None,
    norm: str = "linf",
    random_start: bool = False,
    targeted: bool = False,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Projected gradient descent on the cross-entropy loss; returns adversarial inputs in [0, 1].

    ``step_size`` defaults to ``2.5 * epsilon / steps`` (Madry et al. 2018). With
    ``targeted`` the loss towards ``y`` is minimized instead of maximized.
    """
    check_choice("norm", norm, ("linf", "l2"))
    check_positive("epsilon", epsilon, allow_zero=True)
    check_positive("steps", steps, integer=True)
    alpha = 2.5 * epsilon / steps if step_size is None else step_size
    delta = torch.zeros_like(x)
    if random_start and epsilon > 0:
        delta = (torch.rand(x.shape, generator=generator, device=x.device) * 2 - 1) * epsilon
        delta = project(delta, epsilon, norm)
        delta = (x + delta).clamp(0, 1) - x
    sign = -1.0 if targeted else 1.0
    for _ in range(steps):
        delta.requires_grad_(True)
        loss = F.cross_entropy(model(x + delta), y, reduction="sum")
        (grad,) = torch.autograd.grad(loss, delta)
        with torch.no_grad():
            delta = delta + sign * alpha * ascent_direction(grad, norm)
            delta = project(delta, epsilon, norm)
            delta = (x + delta).clamp(0, 1) - x
    return (x + delta).detach()


@torch.no_grad()
def accuracy(model: nn.Module, x: np.ndarray | torch.Tensor, y: np.ndarray | torch.Tensor, batch_size: int = 1024) -> float:
    """Clean accuracy of ``model`` on ``(x, y)``."""
    model.eval()
    x = torch.as_tensor(x)
    y = torch.as_tensor(y)
    device = next(model.parameters()).device
    correct = 0
    for i in range(0, len(y), batch_size):
        pred = model(x[i : i + batch_size].to(device)).argmax(1).cpu()
        correct += int((pred == y[i : i + batch_size]).sum())
    return correct / max(1, len(y))


def robust_accuracy(
    model: nn.Module,
    x: np.ndarray | torch.Tensor,
    y: np.ndarray | torch.Tensor,
    *,
    epsilon: float,
    norm: str = "linf",
    steps: int = 20,
    batch_size: int = 1024,
) -> float:
    """Accuracy under a ``steps``-step PGD attack of radius ``epsilon``."""
    model.eval()
    x = torch.as_tensor(x)
    y = torch.as_tensor(y)
    device = next(model.parameters()).device
    correct = 0
    for i in range(0, len(y), batch_size):
        xb, yb = x[i : i + batch_size].to(device), y[i : i + batch_size].to(device)
        adv = pgd_attack(model, xb, yb, epsilon=epsilon, steps=steps, norm=norm)
        with torch.no_grad():
            correct += int((model(adv).argmax(1) == yb).sum())
    return correct / max(1, len(y))


# ---------------------------------------------------------------------------
# Strong evaluation: an AutoAttack-style ensemble (Croce & Hein 2020)
# ---------------------------------------------------------------------------
ATTACKS = ("apgd-ce", "apgd-t", "square")
"""The attacks of :func:`strong_evaluation`, run in this order on the inputs still robust."""


def dlr_loss(logits: torch.Tensor, y: torch.Tensor, target: torch.Tensor | None = None) -> torch.Tensor:
    """Difference-of-logits-ratio loss per input (Croce & Hein 2020), to be maximized.

    Untargeted: ``-(z_y - max_{i != y} z_i) / (z_pi1 - z_pi3)``; targeted towards ``t``:
    ``-(z_y - z_t) / (z_pi1 - (z_pi3 + z_pi4) / 2)``, with ``z_pi1 >= z_pi2 >= ...`` the
    sorted logits. Both are invariant to shifting and scaling the logits.
    """
    if logits.shape[1] < 4:
        raise ValueError(f"the DLR loss needs at least 4 classes, the model has {logits.shape[1]}")
    z = logits.float()
    srt = z.sort(dim=1, descending=True).values
    z_y = z.gather(1, y[:, None]).squeeze(1)
    if target is None:
        other = z.scatter(1, y[:, None], float("-inf")).amax(1)
        return -(z_y - other) / (srt[:, 0] - srt[:, 2] + 1e-12)
    z_t = z.gather(1, target[:, None]).squeeze(1)
    return -(z_y - z_t) / (srt[:, 0] - 0.5 * (srt[:, 2] + srt[:, 3]) + 1e-12)


def _apgd_checkpoints(steps: int) -> list[int]:
    """Iterations at which APGD checks its step size: ``ceil(p_j * steps)`` with
    ``p_0 = 0``, ``p_1 = 0.22``, ``p_{j+1} = p_j + max(p_j - p_{j-1} - 0.03, 0.06)``."""
    p = [0.0, 0.22]
    while p[-1] < 1.0:
        p.append(p[-1] + max(p[-1] - p[-2] - 0.03, 0.06))
    return sorted({math.ceil(q * steps) for q in p[1:] if math.ceil(q * steps) < steps})


def apgd_attack(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    *,
    epsilon: float,
    steps: int = 100,
    loss: str = "ce",
    target: torch.Tensor | None = None,
    norm: str = "linf",
    rho: float = 0.75,
    momentum: float = 0.75,
    generator: torch.Generator | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Auto-PGD (Croce & Hein 2020, Algorithm 1); returns ``(x_adv, fooled)``.

    The step size starts at ``2 * epsilon`` (as in AutoAttack, for linf and l2) and is halved per input at
    each checkpoint where the loss rose in at most a fraction ``rho`` of the steps since
    the last one, or where neither step size nor best loss changed since then; after a
    halving the iterate restarts from the best point so far. The update has momentum
    ``momentum`` (0.75 in the paper). ``loss`` is ``"ce"`` (cross-entropy), ``"dlr"``
    (untargeted DLR) or ``"dlr-targeted"`` (needs ``target``). Starts from a random point
    of the ball. ``x_adv`` is, per input, a misclassified iterate where one was found,
    otherwise the iterate of highest loss; ``fooled`` marks the inputs misclassified.
    """
    check_choice("norm", norm, ("linf", "l2"))
    check_choice("loss", loss, ("ce", "dlr", "dlr-targeted"))
    check_positive("epsilon", epsilon, allow_zero=True)
    check_positive("steps", steps, integer=True)
    if loss == "dlr-targeted" and target is None:
        raise ValueError("loss='dlr-targeted' needs target (a tensor of target classes)")

    def loss_and_grad(xa: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        xa = xa.clone().requires_grad_(True)
        with torch.enable_grad():
            logits = model(xa)
            if loss == "ce":
                per = F.cross_entropy(logits, y, reduction="none")
            else:
                per = dlr_loss(logits, y, target if loss == "dlr-targeted" else None)
            (grad,) = torch.autograd.grad(per.sum(), xa)
        return per.detach(), grad, logits.detach()

    n = len(y)
    view = (-1,) + (1,) * (x.dim() - 1)
    t = torch.rand(x.shape, generator=generator, device=x.device) * 2 - 1
    if norm == "linf":
        x_adv = x + epsilon * t / t.flatten(1).abs().amax(1).clamp_min(1e-12).view(view)
    else:
        x_adv = x + epsilon * t / t.flatten(1).norm(dim=1).clamp_min(1e-12).view(view)
    x_adv = x_adv.clamp(0, 1)

    def proj(z: torch.Tensor) -> torch.Tensor:
        return (x + project(z - x, epsilon, norm)).clamp(0, 1)

    cur_loss, grad, logits = loss_and_grad(x_adv)
    fooled = logits.argmax(1) != y
    x_best_adv = x_adv.clone()
    x_best, loss_best, grad_best = x_adv.clone(), cur_loss.clone(), grad.clone()
    step = torch.full((n,), 2.0 * epsilon, device=x.device)
    checkpoints = _apgd_checkpoints(steps)
    last_check = 0
    increases = torch.zeros(n, device=x.device)
    loss_best_last_check = loss_best.clone()
    reduced_last_check = torch.ones(n, dtype=torch.bool, device=x.device)
    x_prev = x_adv.clone()
    prev_loss = cur_loss
    for k in range(steps):
        a = 1.0 if k == 0 else momentum
        z = proj(x_adv + step.view(view) * ascent_direction(grad, norm))
        x_new = proj(x_adv + a * (z - x_adv) + (1 - a) * (x_adv - x_prev))
        x_prev, x_adv = x_adv, x_new
        cur_loss, grad, logits = loss_and_grad(x_adv)
        now_fooled = logits.argmax(1) != y
        x_best_adv[now_fooled & ~fooled] = x_adv[now_fooled & ~fooled]
        fooled |= now_fooled
        increases += (cur_loss > prev_loss).float()
        prev_loss = cur_loss
        better = cur_loss > loss_best
        x_best[better], grad_best[better], loss_best[better] = x_adv[better], grad[better], cur_loss[better]
        if k + 1 in checkpoints:
            window = k + 1 - last_check
            oscillating = increases <= rho * window
            stalled = ~reduced_last_check & (loss_best_last_check >= loss_best)
            reduce = oscillating | stalled
            reduced_last_check = reduce
            loss_best_last_check = loss_best.clone()
            if reduce.any():
                step[reduce] /= 2.0
                x_adv[reduce] = x_best[reduce]
                grad[reduce] = grad_best[reduce]
                # the momentum term restarts with the iterate
                x_prev[reduce] = x_best[reduce]
            increases.zero_()
            last_check = k + 1
    out = torch.where(fooled.view(view), x_best_adv, x_best)
    return out.detach(), fooled


def square_attack(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    *,
    epsilon: float,
    queries: int = 5000,
    p_init: float = 0.8,
    generator: torch.Generator | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Square attack, linf (Andriushchenko et al. 2020), batched in torch; returns ``(x_adv, fooled)``.

    Score-based random search on the margin ``z_y - max_{i != y} z_i``: vertical stripes of
    +-epsilon first, then per query one random square window of the best perturbation
    set to +-epsilon per channel, kept when the margin drops. The window covers about a
    fraction ``p`` of the pixels, halving from ``p_init`` on the paper's schedule
    (rescaled to ``queries``). Each input stops querying once it is misclassified.
    """
    check_positive("epsilon", epsilon, allow_zero=True)
    check_positive("queries", queries, integer=True)
    check_number("p_init", p_init, low=0.0, high=1.0, low_inclusive=False)
    n, c, h, w = x.shape

    def margin(xa: torch.Tensor, yy: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            z = model(xa)
        z_y = z.gather(1, yy[:, None]).squeeze(1)
        return z_y - z.scatter(1, yy[:, None], float("-inf")).amax(1)

    def rand_sign(*shape: int) -> torch.Tensor:
        return torch.randint(0, 2, shape, generator=generator).to(x.device, x.dtype) * 2 - 1

    delta = epsilon * rand_sign(n, c, 1, w).expand(n, c, h, w).clone()
    x_adv = (x + delta).clamp(0, 1)
    best = margin(x_adv, y)
    bounds = torch.tensor([10, 50, 200, 500, 1000, 2000, 4000, 6000, 8000])
    rows = torch.arange(h, device=x.device)[None, :]
    cols = torch.arange(w, device=x.device)[None, :]
    for q in range(1, queries):
        live = torch.nonzero(best > 0).squeeze(1)
        if len(live) == 0:
            break
        it = int(q / queries * 10000)
        p = p_init / 2.0 ** int(torch.searchsorted(bounds, torch.tensor(it), right=False))
        s = int(max(1, min(h - 1, round(math.sqrt(p * h * w)))))
        m = len(live)
        top = torch.randint(0, h - s + 1, (m,), generator=generator).to(x.device)
        left = torch.randint(0, w - s + 1, (m,), generator=generator).to(x.device)
        in_r = (rows >= top[:, None]) & (rows < top[:, None] + s)
        in_c = (cols >= left[:, None]) & (cols < left[:, None] + s)
        window = (in_r[:, :, None] & in_c[:, None, :])[:, None]
        d_old = delta[live]
        x0 = x[live]
        signs = epsilon * rand_sign(m, c, 1, 1)
        d_new = torch.where(window, signs, d_old)
        # redraw windows that change nothing (as in the paper): flip the sign there
        same = ((x0 + d_new).clamp(0, 1) - (x0 + d_old).clamp(0, 1)).abs().flatten(1).amax(1) < 1e-7
        if same.any():
            d_new[same] = torch.where(window[same], -signs[same], d_old[same])
        mg = margin((x0 + d_new).clamp(0, 1), y[live])
        better = mg < best[live]
        delta[live[better]] = d_new[better]
        best[live[better]] = mg[better]
    x_adv = (x + delta).clamp(0, 1)
    return x_adv, best <= 0


@dataclass
class StrongEvaluation:
    """Result of :func:`strong_evaluation` at one radius."""

    epsilon: float
    norm: str
    n: int
    clean_accuracy: float
    robust_accuracy: float
    after_attack: dict[str, float]
    """Robust accuracy after each attack of the ensemble, cumulatively (in the order run)."""
    robust: np.ndarray
    """Per input: True when it is classified correctly and survived every attack and restart."""
    settings: str
    """The attack settings, to be stated with every figure."""

    def interval(self, z: float = 1.96) -> tuple[float, float]:
        """95% Wilson interval of the robust accuracy over the ``n`` inputs."""
        return wilson_interval(int(self.robust.sum()), self.n, z)

    def to_dict(self) -> dict[str, Any]:
        lo, hi = self.interval()
        return {
            "epsilon": self.epsilon,
            "norm": self.norm,
            "n": self.n,
            "clean_accuracy": self.clean_accuracy,
            "robust_accuracy": self.robust_accuracy,
            "robust_accuracy_95ci": [round(lo, 4), round(hi, 4)],
            "after_attack": self.after_attack,
            "settings": self.settings,
        }


def wilson_interval(successes: int, n: int, z: float = 1.96) -> tuple[float, float]:
    """Wilson score interval of a binomial proportion."""
    if n == 0:
        return (0.0, 1.0)
    p = successes / n
    den = 1 + z * z / n
    mid = (p + z * z / (2 * n)) / den
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / den
    return (max(0.0, mid - half), min(1.0, mid + half))


def describe_settings(
    attacks: tuple[str, ...], norm: str, apgd_steps: int, restarts: int, targets: int, square_queries: int
) -> str:
    parts = []
    for a in attacks:
        if a == "apgd-ce":
            parts.append(f"APGD-CE ({apgd_steps} steps, {restarts} random restarts)")
        elif a == "apgd-dlr":
            parts.append(f"APGD-DLR ({apgd_steps} steps, {restarts} random restarts)")
        elif a == "apgd-t":
            parts.append(f"APGD-T (targeted DLR, {apgd_steps} steps, top {targets} target classes)")
        elif a == "square":
            parts.append(f"Square ({square_queries} queries, p_init 0.8)")
    return f"worst case per input over {' + '.join(parts)}, {norm}"


def strong_evaluation(
    model: nn.Module,
    x: np.ndarray | torch.Tensor,
    y: np.ndarray | torch.Tensor,
    *,
    epsilon: float,
    norm: str = "linf",
    attacks: tuple[str, ...] | list[str] = ATTACKS,
    apgd_steps: int = 100,
    restarts: int = 5,
    targets: int = 9,
    square_queries: int = 5000,
    seed: int = 0,
    batch_size: int = 1024,
    progress: bool = False,
) -> StrongEvaluation:
    """Robust accuracy under an AutoAttack-style ensemble (Croce & Hein 2020).

    The attacks run in turn, each on the inputs that every earlier attack (and restart)
    left correctly classified, so an input counts as robust only when it survives all
    of them: ``"apgd-ce"`` (APGD on the cross-entropy, ``restarts`` random starts),
    ``"apgd-dlr"`` (untargeted DLR, optional), ``"apgd-t"`` (APGD on the targeted DLR
    loss towards each of the ``targets`` classes ranked highest after the true one on
    the clean input) and ``"square"`` (score-based, ``square_queries`` queries; linf only).
    Defaults follow AutoAttack's standard version with more APGD-CE restarts (FAB-T is
    left out); the result carries the settings string to quote with the figure.
    """
    check_choice("norm", norm, ("linf", "l2"))
    check_positive("epsilon", epsilon, allow_zero=True)
    attacks = tuple(attacks)
    if not attacks:
        raise ValueError("attacks=() is empty; allowed: any of " + ", ".join(ATTACKS + ("apgd-dlr",)))
    for a in attacks:
        check_choice("attacks", a, ATTACKS + ("apgd-dlr",))
    if "square" in attacks and norm != "linf":
        raise ValueError(f"attacks contains 'square', which is linf only, but norm={norm!r}")
    for name, v in (("apgd_steps", apgd_steps), ("restarts", restarts), ("targets", targets), ("square_queries", square_queries)):
        check_positive(name, v, integer=True)
    model.eval()
    x = torch.as_tensor(x)
    y = torch.as_tensor(y)
    device = next(model.parameters()).device
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        logits = torch.cat([model(x[i : i + batch_size].to(device)).cpu() for i in range(0, len(y), batch_size)])
    robust = logits.argmax(1) == y
    clean = float(robust.float().mean())
    num_classes = logits.shape[1]
    ranked = logits.sort(dim=1, descending=True).indices  # target candidates per input
    after: dict[str, float] = {}
    runs: list[tuple[str, Any]] = []
    for a in attacks:
        if a in ("apgd-ce", "apgd-dlr"):
            runs += [(a, r) for r in range(restarts)]
        elif a == "apgd-t":
            runs += [(a, t) for t in range(min(targets, num_classes - 1))]
        else:
            runs.append((a, 0))
    it = runs
    if progress:
        from tqdm.auto import tqdm

        it = tqdm(runs, desc=f"strong eval {norm} eps={epsilon}", unit="run")
    for i, (a, r) in enumerate(it):
        idx = torch.nonzero(robust).squeeze(1)
        for j in range(0, len(idx), batch_size):
            b = idx[j : j + batch_size]
            xb, yb = x[b].to(device), y[b].to(device)
            if a == "apgd-ce":
                _, fooled = apgd_attack(model, xb, yb, epsilon=epsilon, steps=apgd_steps, loss="ce", norm=norm, generator=gen)
            elif a == "apgd-dlr":
                _, fooled = apgd_attack(model, xb, yb, epsilon=epsilon, steps=apgd_steps, loss="dlr", norm=norm, generator=gen)
            elif a == "apgd-t":
                # the (r+1)-th highest class other than the true one
                order = ranked[b]
                order = order[order != y[b][:, None]].view(len(b), num_classes - 1)
                tgt = order[:, r].to(device)
                _, fooled = apgd_attack(
                    model, xb, yb, epsilon=epsilon, steps=apgd_steps, loss="dlr-targeted", target=tgt, norm=norm, generator=gen
                )
            else:
                _, fooled = square_attack(model, xb, yb, epsilon=epsilon, queries=square_queries, generator=gen)
            robust[b[fooled.cpu()]] = False
        last_of_kind = i + 1 == len(runs) or runs[i + 1][0] != a
        if last_of_kind:
            after[a] = round(float(robust.float().mean()), 4)
    settings = describe_settings(attacks, norm, apgd_steps, restarts, min(targets, num_classes - 1), square_queries)
    return StrongEvaluation(
        epsilon=float(epsilon),
        norm=norm,
        n=len(y),
        clean_accuracy=round(clean, 4),
        robust_accuracy=round(float(robust.float().mean()), 4),
        after_attack=after,
        robust=robust.numpy(),
        settings=settings + f", epsilon {epsilon}, on {len(y)} inputs, seed {seed}",
    )


# ---------------------------------------------------------------------------
# Leaderboard report (``deploy-envs robustness``)
# ---------------------------------------------------------------------------
def load_victim(spec: str, dataset: str = "digits") -> tuple[nn.Module, str]:
    """A zoo model (``"madry"``, ``"digits-madry"``) or a user model by ``"module:function"``.

    ``function`` is called without arguments and must return a ``torch.nn.Module`` that
    maps ``(n, c, h, w)`` images in [0, 1] to logits. Importing the module runs its
    code: pass only modules you trust.
    """
    if not isinstance(spec, str) or not spec:
        raise ValueError(f"victim={spec!r} must be a zoo model name or 'module:function'")
    if ":" in spec:
        import importlib

        module_name, _, func_name = spec.partition(":")
        try:
            module = importlib.import_module(module_name)
        except ImportError as e:
            raise ValueError(f"victim={spec!r}: cannot import module {module_name!r} ({e})") from e
        func = getattr(module, func_name, None)
        if not callable(func):
            raise ValueError(f"victim={spec!r}: module {module_name!r} has no callable {func_name!r}")
        model = func()
        if not isinstance(model, nn.Module):
            raise ValueError(f"victim={spec!r}: {func_name}() returned {type(model).__name__}, not a torch.nn.Module")
        return model.eval(), spec
    from deploy_envs.models.zoo import load_model, resolve_name

    name = resolve_name(spec, dataset)
    return load_model(name), name


def robustness_report(
    model: nn.Module,
    x: np.ndarray | torch.Tensor,
    y: np.ndarray | torch.Tensor,
    *,
    epsilons: tuple[float, ...] | list[float] = (0.1, 0.2, 0.3),
    attacks: tuple[str, ...] | list[str] = ATTACKS,
    name: str = "model",
    dataset: str = "digits",
    norm: str = "linf",
    progress: bool = False,
    **settings: Any,
) -> dict[str, Any]:
    """Clean accuracy and strong-evaluation robust accuracy at each radius, PGD-20 beside it.

    Returns ``{"model", "dataset", "norm", "clean_accuracy", "n", "rows": [...]}`` with one
    row per radius (RobustBench's layout: clean, robust under the ensemble, and the
    settings); ``settings`` go to :func:`strong_evaluation`.
    """
    if not len(epsilons):
        raise ValueError("epsilons=[] is empty; give at least one radius")
    for e in epsilons:
        check_positive("epsilons", e, allow_zero=True)
    rows = []
    clean = None
    for eps in epsilons:
        r = strong_evaluation(model, x, y, epsilon=float(eps), norm=norm, attacks=tuple(attacks), progress=progress, **settings)
        clean = r.clean_accuracy
        row = r.to_dict()
        row["pgd20_robust_accuracy"] = round(robust_accuracy(model, x, y, epsilon=float(eps), norm=norm, steps=20), 4)
        rows.append(row)
    return {"model": name, "dataset": dataset, "norm": norm, "clean_accuracy": clean, "n": len(y), "rows": rows}


def plot_robustness(report: dict[str, Any], path: str) -> str:
    """Robust accuracy against the radius (strong ensemble, PGD-20 dashed, 95% band)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    eps = [r["epsilon"] for r in report["rows"]]
    fig, ax = plt.subplots(figsize=(5, 3.5))
    strong = [r["robust_accuracy"] for r in report["rows"]]
    lo = [r["robust_accuracy_95ci"][0] for r in report["rows"]]
    hi = [r["robust_accuracy_95ci"][1] for r in report["rows"]]
    ax.plot(eps, strong, "o-", label="strong ensemble")
    ax.fill_between(eps, lo, hi, alpha=0.2)
    ax.plot(eps, [r["pgd20_robust_accuracy"] for r in report["rows"]], "s--", label="PGD-20")
    ax.axhline(report["clean_accuracy"], color="grey", lw=0.8, ls=":", label="clean")
    ax.set_xlabel(f"{report['norm']} radius")
    ax.set_ylabel("accuracy")
    ax.set_ylim(0, 1.02)
    ax.set_title(f"{report['model']} on {report['dataset']} (n={report['n']})")
    ax.legend(fontsize=8)
    return str(save_figure(fig, path, dpi=120))

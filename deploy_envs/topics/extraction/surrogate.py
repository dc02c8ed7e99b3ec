"""Batched surrogate models: ``B`` independent copies trained in one set of tensor ops.

The parameters of all copies are stacked along a leading batch dimension and
applied with batched matrix products (``torch.baddbmm``), so the surrogates of 64
extraction attacks train in the time of a few larger products, not 64 small ones.
Each copy has its own Adam state (moments and step count), so resetting or
training a subset of copies never touches the others.

Architectures (``kind``):

* ``"logistic"``: multinomial logistic regression, ``x @ W + b``;
* ``"mlp"``: one hidden ReLU layer of ``hidden`` units.

Fits:

* :meth:`BatchedSurrogate.fit` - ``steps`` full-batch Adam steps (Kingma & Ba 2015) on
  the soft-label cross-entropy ``-sum_k y_k log q_k`` (knowledge distillation,
  Hinton et al. 2015; with one-hot answers it is the usual cross-entropy), warm
  started from the current parameters; rows of weight 0 (refused answers, unused
  slots) do not count;
* :meth:`BatchedSurrogate.solve_equations` - ``"logistic"`` only: Tramer et al.
  2016's equation-solving attack. ``log y_k - mean_j log y_j`` (the centred
  log-ratio of the answer) equals ``s_k - mean_j s_j`` for the victim's scores
  ``s = x @ W + b`` when the victim is a softmax-linear model, a linear system in
  ``(W, b)``; its least-squares (minimum-norm when under-determined) solution is
  the victim up to the softmax's gauge as soon as ``d + 1`` affinely independent
  probability answers are in. Rounded, noisy or label-only answers make the system
  inconsistent and the solution wrong.
"""
from __future__ import annotations

import math

import numpy as np
import torch

KINDS = ("logistic", "mlp")
FITS = ("gradient", "equations")


class BatchedSurrogate:
    """``num_copies`` surrogates of one architecture with stacked parameters (float32)."""

    def __init__(self, kind: str, d: int, num_classes: int, num_copies: int, *, hidden: int = 64, lr: float = 0.01) -> None:
        self.kind, self.d, self.K, self.B, self.hidden, self.lr = kind, d, num_classes, num_copies, hidden, lr
        shapes = {"W": (d, num_classes), "b": (1, num_classes)} if kind == "logistic" else {
            "W1": (d, hidden), "b1": (1, hidden), "W2": (hidden, num_classes), "b2": (1, num_classes)
        }
        self.shapes = shapes
        self.params = {k: torch.zeros(num_copies, *s) for k, s in shapes.items()}
        self.m = {k: torch.zeros_like(v) for k, v in self.params.items()}
        self.v = {k: torch.zeros_like(v) for k, v in self.params.items()}
        self.t = torch.zeros(num_copies)

    # -------------------------------------------------------------- init
    def init(self, idx: np.ndarray, rngs: list[np.random.Generator]) -> None:
        """Fresh parameters for copies ``idx`` (He-style normal init drawn from each copy's generator; zeros for logistic)."""
        t = torch.as_tensor(idx, dtype=torch.long)
        for k in self.params:
            self.m[k][t] = 0.0
            self.v[k][t] = 0.0
        self.t[t] = 0.0
        if self.kind == "logistic":
            for k in self.params:
                self.params[k][t] = 0.0
            return
        w1 = np.stack([rngs[i].normal(0.0, math.sqrt(2.0 / self.d), (self.d, self.hidden)) for i in idx])
        w2 = np.stack([rngs[i].normal(0.0, math.sqrt(1.0 / self.hidden), (self.hidden, self.K)) for i in idx])
        self.params["W1"][t] = torch.from_numpy(w1.astype(np.float32))
        self.params["W2"][t] = torch.from_numpy(w2.astype(np.float32))
        self.params["b1"][t] = 0.0
        self.params["b2"][t] = 0.0

    # ----------------------------------------------------------- forward
    def _logits(self, p: dict[str, torch.Tensor], x: torch.Tensor) -> torch.Tensor:
        if self.kind == "logistic":
            return torch.baddbmm(p["b"], x, p["W"])
        h = torch.baddbmm(p["b1"], x, p["W1"]).relu_()  # in place: baddbmm's backward does not need its output
        return torch.baddbmm(p["b2"], h, p["W2"])

    def _sub(self, idx: torch.Tensor | None) -> dict[str, torch.Tensor]:
        return self.params if idx is None else {k: v[idx] for k, v in self.params.items()}

    @torch.no_grad()
    def logits(self, idx: np.ndarray | None, x: torch.Tensor) -> torch.Tensor:
        """Logits of copies ``idx`` (None: all) on ``x`` ``(len(idx), n, d)`` or a shared ``(n, d)``."""
        p = self._sub(None if idx is None else torch.as_tensor(idx, dtype=torch.long))
        b = next(iter(p.values())).shape[0]
        if x.ndim == 2:
            x = x.unsqueeze(0).expand(b, *x.shape)
        return self._logits(p, x)

    def predict(self, idx, x) -> torch.Tensor:
        return self.logits(idx, x).argmax(-1)

    def entropy(self, idx, x) -> torch.Tensor:
        """Predictive entropy divided by ``log K`` (in [0, 1])."""
        logp = torch.log_softmax(self.logits(idx, x), -1)
        return (-(logp.exp() * logp).sum(-1) / math.log(self.K)).clamp(0.0, 1.0)

    def input_gradient(self, idx, x: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """Gradient of the logit of ``labels`` w.r.t. the input, per copy: the Jacobian row Papernot et al. step along."""
        p = self._sub(torch.as_tensor(idx, dtype=torch.long))
        xg = x.detach().clone().requires_grad_(True)
        with torch.enable_grad():
            z = self._logits(p, xg)
            sel = z.gather(-1, labels.unsqueeze(-1)).sum()
            (g,) = torch.autograd.grad(sel, xg)
        return g

    # --------------------------------------------------------------- fit
    @torch.no_grad()
    def _loss_gradients(self, p: dict[str, torch.Tensor], xt: torch.Tensor, yt: torch.Tensor, ysum: torch.Tensor,
                        wn: torch.Tensor) -> dict[str, torch.Tensor]:
        """Gradients of the weighted soft-label cross-entropy, in closed form, per copy.

        ``xt`` ``(b, d, n)`` and ``yt`` ``(b, K, n)`` are the inputs and targets with the rows last,
        ``ysum`` ``(b, 1, n)`` each row's target mass and ``wn`` ``(b, 1, n)`` its weight over the
        copy's total weight. With logits ``z`` and ``q = softmax(z)``, the loss
        ``sum_i wn_i * -sum_k y_ik log q_ik`` has ``dL/dz_i = wn_i * (ysum_i * q_i - y_i)``; the
        layers' gradients follow by the chain rule (equal to autograd's, tested, at about half its
        cost for these small layers: no graph and one pass per product).
        """
        if self.kind == "logistic":
            zt = torch.baddbmm(p["b"].transpose(1, 2), p["W"].transpose(1, 2), xt)
            gt = torch.softmax(zt, 1).mul_(ysum).sub_(yt).mul_(wn)  # (b, K, n)
            return {"W": torch.bmm(xt, gt.transpose(1, 2)), "b": gt.sum(2).unsqueeze(1)}
        ht = torch.baddbmm(p["b1"].transpose(1, 2), p["W1"].transpose(1, 2), xt).relu_()  # (b, hidden, n)
        zt = torch.baddbmm(p["b2"].transpose(1, 2), p["W2"].transpose(1, 2), ht)  # (b, K, n)
        gt = torch.softmax(zt, 1).mul_(ysum).sub_(yt).mul_(wn)
        # through the ReLU: aten's own ReLU backward, one pass with no mask tensor (ht is post-ReLU: zero where cut)
        dht = torch.ops.aten.threshold_backward(torch.bmm(p["W2"], gt), ht, 0.0)
        return {"W1": torch.bmm(xt, dht.transpose(1, 2)), "b1": dht.sum(2).unsqueeze(1),
                "W2": torch.bmm(ht, gt.transpose(1, 2)), "b2": gt.sum(2).unsqueeze(1)}

    @torch.no_grad()
    def fit(self, idx: np.ndarray, x: torch.Tensor, y: torch.Tensor, w: torch.Tensor, steps: int) -> None:
        """``steps`` Adam steps for copies ``idx`` on inputs ``x`` ``(b, n, d)``, soft targets ``y`` ``(b, n, K)``, row weights ``w`` ``(b, n)``."""
        if steps <= 0:
            return
        t = torch.as_tensor(idx, dtype=torch.long)
        full = len(idx) == self.B
        p = {k: (v if full else v[t]).clone() for k, v in self.params.items()}
        m = {k: (v if full else v[t]).clone() for k, v in self.m.items()}
        v2 = {k: (v if full else v[t]).clone() for k, v in self.v.items()}
        step = (self.t if full else self.t[t]).clone()
        norm = w.sum(1).clamp_min(1.0)
        active = (w.sum(1) > 0).float()  # copies with no answer yet keep their parameters
        all_active = bool(active.all())
        b1, b2, eps = 0.9, 0.999, 1e-8
        # everything in a queries-last layout: the classes and hidden units on the middle axis, where
        # torch's CPU softmax is several times faster than over a short last axis
        xt = x.transpose(1, 2)
        yt = y.transpose(1, 2)
        ysum = yt.sum(1, keepdim=True)
        wn = (w / norm.unsqueeze(1)).unsqueeze(1)
        for _ in range(steps):
            grads = self._loss_gradients(p, xt, yt, ysum, wn)
            step = step + active
            c1 = (1 - b1 ** step.clamp_min(1.0))
            c2 = (1 - b2 ** step.clamp_min(1.0))
            for k, prm in p.items():
                g = grads[k]
                shape = (-1,) + (1,) * (g.ndim - 1)
                if all_active:  # the same update in place, in fewer passes over the parameters
                    m[k].mul_(b1).add_(g, alpha=1 - b1)
                    v2[k].mul_(b2).addcmul_(g, g, value=1 - b2)
                    denom = (v2[k] / c2.view(shape)).sqrt_().add_(eps)
                    prm.addcdiv_(m[k] / c1.view(shape), denom, value=-self.lr)
                    continue
                a = active.view(shape)
                m[k] = torch.where(a > 0, b1 * m[k] + (1 - b1) * g, m[k])
                v2[k] = torch.where(a > 0, b2 * v2[k] + (1 - b2) * g * g, v2[k])
                upd = self.lr * (m[k] / c1.view(shape)) / ((v2[k] / c2.view(shape)).sqrt() + eps)
                prm -= upd * a
        for k in self.params:
            if full:
                self.params[k] = p[k]
                self.m[k], self.v[k] = m[k], v2[k]
            else:
                self.params[k][t] = p[k]
                self.m[k][t], self.v[k][t] = m[k], v2[k]
        if full:
            self.t = step
        else:
            self.t[t] = step

    def solve_equations(self, idx: np.ndarray, x: torch.Tensor, y: torch.Tensor, w: torch.Tensor) -> None:
        """Tramer et al.'s equation solving for copies ``idx`` (logistic only; see the module docstring)."""
        if self.kind != "logistic":
            raise ValueError(f"fit='equations' needs surrogate='logistic' (got {self.kind!r})")
        xd = x.double()
        a = torch.cat([xd, torch.ones(*xd.shape[:-1], 1, dtype=torch.float64)], -1) * w.double().unsqueeze(-1)
        logy = torch.log(y.double().clamp_min(1e-30))
        rhs = (logy - logy.mean(-1, keepdim=True)) * w.double().unsqueeze(-1)
        theta = torch.linalg.pinv(a, rtol=1e-10) @ rhs  # (b, d + 1, K), minimum-norm least squares
        t = torch.as_tensor(idx, dtype=torch.long)
        self.params["W"][t] = theta[:, :-1, :].float()
        self.params["b"][t] = theta[:, -1:, :].float()

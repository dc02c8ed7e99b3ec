"""``deploy_envs/ModelExtraction-v0``: steal a classifier through its prediction API."""
from __future__ import annotations

from typing import Any

import numpy as np
import torch
from gymnasium import spaces

from deploy_envs.api.model_api import DEFENSES, OUTPUTS, PRADA_RESPONSES, ModelAPI
from deploy_envs.core.batched import BatchedCore
from deploy_envs.core.spaces import flat_box
from deploy_envs.core.validation import Arg, check_choice, check_number, check_positive, check_probability
from deploy_envs.data import load_dataset
from deploy_envs.topics.extraction.surrogate import FITS, KINDS, BatchedSurrogate


#: the surrogate's learning rate is bounded for the env and the game alike
SURROGATE_ARGUMENTS = {"lr": Arg(low=0.0, high=10.0, low_inclusive=False, why="larger rates make the surrogate diverge to NaN, outside the observation space")}


class SurrogateThief:
    """The part of a model-extraction core that the env and the ``ExtractionGuard-v0`` game share.

    The thief's batched surrogate, every query with its (normalised) answer and weight so far,
    and the referee's held-out set on which the surrogate's fidelity to the victim and its test
    accuracy are measured (never in observations or info). A core sets ``num_envs``, ``rngs``,
    ``surrogate_kind``, ``hidden``, ``lr`` and ``batch_size`` before :meth:`_init_thief`.
    """

    def _check_surrogate(self, surrogate: str, hidden: int, fit_steps: int, lr: float, batch_size: int) -> None:
        self.surrogate_kind = check_choice("surrogate", surrogate, KINDS)
        self.hidden = check_positive("hidden", hidden, integer=True)
        self.fit_steps = check_number("fit_steps", fit_steps, low=0, integer=True)
        self.lr = check_positive("lr", lr)
        self.batch_size = check_positive("batch_size", batch_size, integer=True)

    def _init_held_out(self, api: ModelAPI, dataset: str, holdout: int | None) -> Any:
        """The referee's held-out inputs (the first ``holdout`` of the test split) and the victim's labels of them; returns the dataset."""
        ds = load_dataset(dataset)
        self.d, self.K = api.d, api.num_classes
        x_hold, y_hold = ds.x_test.reshape(len(ds.y_test), self.d), ds.y_test
        if holdout is not None:
            holdout = check_number("holdout", holdout, low=1, high=len(y_hold), integer=True)
            x_hold, y_hold = x_hold[:holdout], y_hold[:holdout]
        self._x_hold = torch.from_numpy(np.ascontiguousarray(x_hold, dtype=np.float32))
        self._victim_hold = torch.from_numpy(api.victim_probabilities(x_hold).argmax(1))
        self._true_hold = torch.from_numpy(np.asarray(y_hold, dtype=np.int64))
        return ds

    def _init_thief(self) -> None:
        """The surrogates and query records of all copies (room for ``max_queries`` queries each)."""
        n, d, K, Q = self.num_envs, self.d, self.K, self.max_queries
        self.surrogate = BatchedSurrogate(self.surrogate_kind, d, K, n, hidden=self.hidden, lr=self.lr)
        self.xq = torch.zeros(n, Q, d)
        self.yq = torch.zeros(n, Q, K)
        self.wq = torch.zeros(n, Q)
        self.queries = np.zeros(n, np.int64)
        self.fidelity = np.zeros(n, np.float64)
        self.test_accuracy = np.zeros(n, np.float64)

    def _reset_thief(self, idx: np.ndarray) -> None:
        """A fresh surrogate (from each copy's generator) and an empty record in copies ``idx``, then their fidelity."""
        self.surrogate.init(idx, self.rngs)
        t = torch.as_tensor(idx, dtype=torch.long)
        self.xq[t] = 0.0
        self.yq[t] = 0.0
        self.wq[t] = 0.0
        self.queries[idx] = 0
        self._evaluate(idx)

    def _learn(self, idx: np.ndarray, xq: torch.Tensor, y: torch.Tensor, w: torch.Tensor, equations: bool = False) -> np.ndarray:
        """Record the batch ``xq`` ``(b, m, d)`` with answers ``y`` and weights ``w``, refit the surrogates of
        copies ``idx`` on all their answers so far; return each copy's fidelity gain."""
        b, m = xq.shape[:2]
        t = torch.as_tensor(idx, dtype=torch.long)
        pos = torch.as_tensor(self.queries[idx][:, None] + np.arange(m)[None], dtype=torch.long)
        rows = t[:, None].expand(b, m)
        self.xq[rows, pos] = xq
        self.yq[rows, pos] = y
        self.wq[rows, pos] = w
        self.queries[idx] += m
        n = int(self.queries[idx].max())
        x, y, w = self.xq[t, :n], self.yq[t, :n], self.wq[t, :n]
        if equations:
            self.surrogate.solve_equations(idx, x, y, w)
        else:
            self.surrogate.fit(idx, x, y, w, self.fit_steps)
        before = self.fidelity[idx].copy()
        self._evaluate(idx)
        return self.fidelity[idx] - before

    def _evaluate(self, idx: np.ndarray) -> None:
        pred = self.surrogate.predict(idx, self._x_hold)
        self.fidelity[idx] = (pred == self._victim_hold).double().mean(1).numpy()
        self.test_accuracy[idx] = (pred == self._true_hold).double().mean(1).numpy()


class ExtractionCore(SurrogateThief, BatchedCore):
    """## Description

    The agent is a model thief with query access to a victim classifier behind a
    :class:`~deploy_envs.api.ModelAPI` (Tramer et al. 2016; Papernot et al. 2017;
    Orekondy et al. 2019). Each step it submits a batch of ``batch_size`` queries
    (inputs in ``[0, 1]^d``); the env trains its copy's surrogate model on all the
    answers so far and rewards the gain in *fidelity*: the fraction of held-out
    inputs on which the surrogate and the victim agree. The held-out inputs are the
    dataset's test split; the agent never sees them, nor the victim's gradients or
    weights (a black-box threat model: nothing of them is in the observation or
    ``info``).

    ## Action Space

    ``Box(0, 1, (batch_size * d,), float32)``: ``batch_size`` queries of ``d`` pixels,
    row after row (``action.reshape(batch_size, d)``).

    ## Observation Space

    A flat ``Box`` of float32, the concatenation of (see ``obs_slices``):

    | part | size | range | content |
    |---|---|---|---|
    | ``answer`` | batch_size * K | [0, 1] | the API's answers to the last batch (one-hot, top-k or probabilities; zeros where refused) |
    | ``answered`` | batch_size | [0, 1] | 1 where the API answered the query, 0 where it refused it |
    | ``uncertainty`` | batch_size | [0, 1] | the surrogate's predictive entropy / log K on each query, before it learned the answer |
    | ``budget`` | 1 | [0, 1] | fraction of the query budget left |

    ## Rewards

    ``reward_scale * (fidelity_after - fidelity_before) - query_cost * batch_size``
    each step, so an episode's return is the fidelity gained over the initial
    (untrained) surrogate minus the query cost.

    ## Starting State

    A fresh surrogate (zero weights for ``"logistic"``, a random initialisation drawn
    from the copy's generator for ``"mlp"``), a new API client with an empty
    history (budget, rate and the PRADA detector start afresh), an all-zero answer,
    full budget.

    ## Episode End

    Terminates when ``max_queries`` queries have been submitted (the budget is part
    of the observation). Refused queries count against the episode's budget.

    ## Info

    ``fidelity`` (agreement of surrogate and victim on the held-out inputs),
    ``test_accuracy`` (surrogate accuracy on their true labels), ``queries``
    (submitted), ``answered`` (answered by the API), ``flagged`` (the API's detector
    has flagged this client).

    ## Arguments

    * ``victim``: ``"standard"`` (the digits CNN, default), ``"madry"`` or another zoo
      name, ``"linear"`` (multinomial logistic regression, :mod:`deploy_envs.models.linear_victim`),
      an ``nn.Module`` or a fitted sklearn-like linear model; ``dataset``: ``"digits"``.
    * ``output``: ``"label"``, ``"top_k"``, ``"probabilities"`` (default) or ``"rounded"``;
      ``top_k`` (3), ``decimals`` (2).
    * ``defense``: ``"none"``, ``"rounding"``, ``"noise"``, ``"prada"``; ``noise_scale``
      (0.1), ``prada_delta`` (0.9), ``prada_response`` (``"refuse"`` or ``"poison"``).
    * ``surrogate``: ``"mlp"`` (default) or ``"logistic"``; ``hidden`` (64);
      ``fit``: ``"gradient"`` (``fit_steps`` Adam steps of rate ``lr`` per env step on
      the soft-label cross-entropy) or ``"equations"`` (Tramer et al.'s equation
      solving, logistic surrogate only).
    * ``batch_size``: queries per step (10); ``max_queries``: budget per episode (200),
      a multiple of ``batch_size``.
    * ``query_cost`` (0), ``reward_scale`` (1), ``holdout``: number of held-out test
      inputs used for fidelity (None = all), ``device`` (the victim's).
    * ``api``: where the queries go instead of the env's own in-process API, e.g. a
      :class:`~deploy_envs.api.client.RemoteModelAPI` of a model served with
      ``deploy-envs serve`` (its granularity and defense then decide the answers;
      ``victim``/``dataset`` must name the served model: the env keeps a local copy
      only to score fidelity, as the referee). Copy ``i`` queries as client
      ``"copy-i"`` (give the remote API one key per copy, or one key for all); the
      server keeps budgets across episodes and draws its own noise, so only the
      in-process default is reproducible by seed.

    ## Version History

    * v0: initial release.
    """

    arguments = SURROGATE_ARGUMENTS

    def __init__(
        self,
        num_envs: int = 1,
        render_mode: str | None = None,
        *,
        victim: Any = "standard",
        dataset: str = "digits",
        output: str = "probabilities",
        top_k: int = 3,
        decimals: int = 2,
        defense: str = "none",
        noise_scale: float = 0.1,
        prada_delta: float = 0.9,
        prada_response: str = "refuse",
        surrogate: str = "mlp",
        hidden: int = 64,
        fit: str = "gradient",
        fit_steps: int = 10,
        lr: float = 0.01,
        batch_size: int = 10,
        max_queries: int = 200,
        query_cost: float = 0.0,
        reward_scale: float = 1.0,
        holdout: int | None = None,
        device: str = "cpu",
        api: Any = None,
    ) -> None:
        super().__init__(num_envs, render_mode)
        check_choice("output", output, OUTPUTS)
        check_choice("defense", defense, DEFENSES)
        check_choice("prada_response", prada_response, PRADA_RESPONSES)
        self._check_surrogate(surrogate, hidden, fit_steps, lr, batch_size)
        self.fit = check_choice("fit", fit, FITS)
        if fit == "equations" and surrogate != "logistic":
            raise ValueError(f"fit='equations' needs surrogate='logistic' (got surrogate={surrogate!r}); use fit='gradient' for an MLP")
        self.max_queries = check_positive("max_queries", max_queries, integer=True)
        if self.max_queries % self.batch_size:
            raise ValueError(f"max_queries={max_queries!r} must be a multiple of batch_size={batch_size!r}")
        self.query_cost = check_number("query_cost", query_cost, low=0.0)
        self.reward_scale = check_number("reward_scale", reward_scale)
        check_probability("prada_delta", prada_delta)
        self.api = ModelAPI(
            victim, dataset=dataset, output=output, top_k=top_k, decimals=decimals, defense=defense,
            noise_scale=noise_scale, prada_delta=prada_delta, prada_response=prada_response, device=device,
        )
        self.output, self.defense = output, defense
        self.query_api = self.api if api is None else api
        if api is not None and (getattr(api, "d", None), getattr(api, "num_classes", None)) != (self.api.d, self.api.num_classes):
            raise ValueError(f"api={api!r} answers {getattr(api, 'd', None)}-dim queries with {getattr(api, 'num_classes', None)} classes; "
                             f"victim={victim!r} on dataset={dataset!r} needs {self.api.d} and {self.api.num_classes}")
        self._init_held_out(self.api, dataset, holdout)
        d, K = self.d, self.K

        m = self.batch_size
        parts = [("answer", m * K), ("answered", m), ("uncertainty", m), ("budget", 1)]
        self.single_observation_space, self.obs_slices = flat_box([(name, size, 0.0, 1.0) for name, size in parts])
        self.obs_dim = self.single_observation_space.shape[0]
        self.single_action_space = spaces.Box(0.0, 1.0, (m * d,), dtype=np.float32)

        self._init_thief()
        n = self.num_envs
        self.answered = np.zeros(n, np.int64)
        self.flagged = np.zeros(n, bool)
        self.clients = [f"copy-{i}" for i in range(n)]

    # ------------------------------------------------------------ helpers
    def _info(self, idx) -> dict[str, np.ndarray]:
        return {
            "fidelity": self.fidelity[idx].copy(),
            "test_accuracy": self.test_accuracy[idx].copy(),
            "queries": self.queries[idx].copy(),
            "answered": self.answered[idx].copy(),
            "flagged": self.flagged[idx].copy(),
        }

    # -------------------------------------------------------------- reset
    def reset_indices(self, idx, options=None):
        self.answered[idx] = 0
        self.flagged[idx] = False
        for i in idx:
            self.query_api.reset_client(self.clients[i])
        self._reset_thief(idx)
        obs = np.zeros((len(idx), self.obs_dim), np.float32)
        obs[:, self.obs_slices["budget"]] = 1.0
        return obs, self._info(idx)

    # --------------------------------------------------------------- step
    def step_indices(self, idx, actions):
        b, m, d, K = len(idx), self.batch_size, self.d, self.K
        q = actions.reshape(b, m, d)
        xq = torch.from_numpy(np.ascontiguousarray(q))
        uncertainty = self.surrogate.entropy(idx, xq).numpy()
        ans = self.query_api.query_many(q, [self.clients[i] for i in idx], [self.rngs[i] for i in idx])
        out = torch.from_numpy(ans.outputs)
        total = out.sum(-1, keepdim=True)
        self.answered[idx] += ans.ok.sum(1)
        self.flagged[idx] = ans.flagged
        w = torch.from_numpy(ans.ok.astype(np.float32)) * (total.squeeze(-1) > 0).float()
        gain = self._learn(idx, xq, out / total.clamp_min(1e-12), w, equations=self.fit == "equations")
        reward = self.reward_scale * gain - self.query_cost * m
        obs = np.empty((b, self.obs_dim), np.float32)
        s = self.obs_slices
        obs[:, s["answer"]] = ans.outputs.reshape(b, m * K)
        obs[:, s["answered"]] = ans.ok
        obs[:, s["uncertainty"]] = uncertainty
        obs[:, s["budget"]] = (1.0 - self.queries[idx] / self.max_queries)[:, None]
        np.clip(obs, 0.0, 1.0, out=obs)
        terminated = self.queries[idx] >= self.max_queries
        return obs, np.asarray(reward, np.float64), terminated, np.zeros(b, bool), self._info(idx)

    def render_ansi(self, i: int) -> str:
        return (
            f"victim {self.api.victim_name} ({self.output}, defense {self.defense}) surrogate {self.surrogate_kind}: "
            f"queries {self.queries[i]}/{self.max_queries} answered {self.answered[i]} "
            f"fidelity {self.fidelity[i]:.3f} test accuracy {self.test_accuracy[i]:.3f}"
            + (" FLAGGED" if self.flagged[i] else "")
        )

    def render_rgb(self, i: int) -> np.ndarray:
        """The last batch of queries with the API's answers (top class and its probability, or refused), and how close the copy is."""
        from deploy_envs.core.rendering import PALETTE, mosaic, sketch

        sk = sketch(self, size=(560, 260), grid=(1, 2), width_ratios=(1.6, 1), margins={"left": 0.02, "wspace": 0.25})
        ax_q, ax_b = sk.begin(f"ModelExtraction: victim {self.api.victim_name} ({self.output}, defense {self.defense}), "
                              f"surrogate {self.surrogate_kind}, queries {self.queries[i]}/{self.max_queries}"
                              + (" FLAGGED" if self.flagged[i] else ""), fontsize=8)
        q = int(self.queries[i])
        rows = range(max(0, q - min(self.batch_size, 8)), q)
        xs = [self.xq[i, r].numpy() for r in rows]
        labels, colours = [], []
        for r in rows:
            if self.wq[i, r] > 0:
                y = self.yq[i, r]
                k = int(y.argmax())
                labels.append(f"{k} ({float(y[k]):.2f})")
                colours.append(PALETTE["black"])
            else:
                labels.append("refused")
                colours.append(PALETTE["red"])
        mosaic(ax_q, xs, labels, cols=4, colours=colours, title="last queries -> answers")
        ax_b.bar([0, 1, 2], [self.fidelity[i], self.test_accuracy[i], self.answered[i] / max(1, q)],
                 color=[PALETTE["blue"], PALETTE["green"], PALETTE["grey"]])
        ax_b.set_xticks([0, 1, 2], ["fidelity", "test acc", "answered"], fontsize=7)
        ax_b.set_ylim(0, 1)
        ax_b.set_title("surrogate", fontsize=8)
        ax_b.tick_params(labelsize=7)
        return sk.finish()

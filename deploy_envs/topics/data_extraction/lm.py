"""The synthetic corpus with canaries and the character-level GRU language model of ``DataExtraction-v0``.

Corpus (:func:`make_corpus`): records generated deterministically from templates
(names, dates, street numbers, order numbers, phone calls), so the data has no
provenance question, plus ``canaries`` secret records in the format of Carlini et
al. 2019 ("The Secret Sharer", USENIX Security): ``"the pin of <name> is <secret>.\\n"``
where the secret is a string of :data:`SECRET_LENGTH` digits. The phrase "the pin of"
occurs nowhere else in the corpus, and each canary is inserted ``repetitions`` times
at positions drawn from the corpus seed.

Model (:class:`CharGRU`): token embedding, one GRU layer, a linear read-out over the
vocabulary. Every record is one training sequence that starts with a ``<bos>`` token
and ends with a newline. :func:`train_lm` trains it with Adam, or with DP-SGD (Abadi
et al. 2016, "Deep Learning with Differential Privacy", CCS): Poisson sampling of
records, per-record gradients (``torch.func.vmap`` over ``torch.func.grad``) clipped
to ``max_grad_norm`` and Gaussian noise of std ``noise_multiplier * max_grad_norm``
added to their sum. The privacy guarantee is computed with opacus' RDP accountant
(:func:`dp_epsilon`).

Exposure (:func:`exact_exposure`): the rank of the true secret among all ``10^n``
candidate secrets by the model's log-likelihood of the secret's digits after the
canary prefix, ``exposure = log2(10^n) - log2(rank)`` (Carlini et al. 2019, Def. 4),
computed exactly by enumerating the digit tree level by level (one batched GRU step
per level: 111,111 states for 6 digits).
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import torch
from torch import nn

BOS = "\x02"
VOCAB: tuple[str, ...] = (BOS, "\n", " ", ".", ":", "-", "'", *"0123456789", *"abcdefghijklmnopqrstuvwxyz")
STOI = {c: i for i, c in enumerate(VOCAB)}
DIGIT_TOKENS = np.array([STOI[str(d)] for d in range(10)], dtype=np.int64)
SECRET_LENGTH = 6
CANARY_NAMES = ("carol", "dave", "erin", "frank")
"""The canary owners; canary ``i`` is ``"the pin of <CANARY_NAMES[i]> is "`` + its secret."""
CANARY_SEED = 1234

_NAMES = ("alice", "bob", "chen", "diana", "emil", "fatima", "george", "hana", "ivan", "julia", "kofi", "lena",
          "mateo", "nora", "omar", "priya", "quinn", "rosa", "sam", "tariq", "uma", "victor", "wen", "yusuf", "zoe")
_MONTHS = ("january", "february", "march", "april", "may", "june", "july", "august", "september", "october",
           "november", "december")
_STREETS = ("oak", "maple", "pine", "cedar", "elm", "birch", "lake", "hill", "river", "park")
_ITEMS = ("book", "lamp", "chair", "kettle", "radio", "clock", "bike", "desk")


def canary_secrets(n: int = len(CANARY_NAMES), length: int = SECRET_LENGTH) -> np.ndarray:
    """The secret digits ``(n, length)`` of the canaries (fixed by :data:`CANARY_SEED`)."""
    return np.random.default_rng(CANARY_SEED).integers(0, 10, size=(n, length))


def canary_prefix(i: int) -> str:
    return f"the pin of {CANARY_NAMES[i]} is "


def canary_text(i: int, secret: np.ndarray | None = None) -> str:
    s = canary_secrets()[i] if secret is None else secret
    return canary_prefix(i) + "".join(str(int(d)) for d in s) + ".\n"


def _record(rng: np.random.Generator) -> str:
    name = _NAMES[rng.integers(len(_NAMES))]
    kind = rng.integers(4)
    if kind == 0:
        return f"{name} was born on {rng.integers(1, 29)} {_MONTHS[rng.integers(12)]} {rng.integers(1950, 2010)}.\n"
    if kind == 1:
        return f"{name} lives at {rng.integers(1, 400)} {_STREETS[rng.integers(len(_STREETS))]} street.\n"
    if kind == 2:
        other = _NAMES[rng.integers(len(_NAMES))]
        return f"{name} called {other} at {rng.integers(0, 24):02d}:{rng.integers(0, 60):02d}.\n"
    return f"order {rng.integers(10000, 100000)} of a {_ITEMS[rng.integers(len(_ITEMS))]} shipped to {name}.\n"


def make_corpus(n_records: int = 1500, canaries: int = len(CANARY_NAMES), repetitions: int = 1, seed: int = 0) -> list[str]:
    """``n_records`` templated records with each of the first ``canaries`` canaries inserted ``repetitions`` times."""
    rng = np.random.default_rng(seed)
    records = [_record(rng) for _ in range(n_records)]
    inserts = [canary_text(i) for i in range(canaries) for _ in range(repetitions)]
    positions = np.sort(rng.integers(0, n_records + 1, size=len(inserts)))[::-1]
    for pos, text in zip(positions, inserts):
        records.insert(int(pos), text)
    return records


def encode(records: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
    """Tokens ``(N, L+1)`` (``<bos>`` + record, padded with 0) and their lengths (record length + 1)."""
    lengths = np.array([len(r) + 1 for r in records])
    tokens = np.zeros((len(records), lengths.max()), np.int64)
    for i, r in enumerate(records):
        tokens[i, 0] = STOI[BOS]
        tokens[i, 1 : len(r) + 1] = [STOI[c] for c in r]
    return torch.from_numpy(tokens), torch.from_numpy(lengths)


# -------------------------------------------------------------------- model
class CharGRU(nn.Module):
    """Embedding -> one GRU layer -> linear read-out over :data:`VOCAB`."""

    def __init__(self, hidden: int = 128, embed: int = 32) -> None:
        super().__init__()
        self.hidden, self.embed_dim = hidden, embed
        self.embed = nn.Embedding(len(VOCAB), embed)
        self.gru = nn.GRU(embed, hidden, batch_first=True)
        self.out = nn.Linear(hidden, len(VOCAB))

    def forward(self, tokens: torch.Tensor, h: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Logits ``(B, T, V)`` of the next token after each position, and the final hidden state ``(B, H)``."""
        y, hn = self.gru(self.embed(tokens), None if h is None else h.unsqueeze(0))
        return self.out(y), hn[0]

    @torch.no_grad()
    def prefix_state(self, text: str) -> torch.Tensor:
        """Hidden state ``(H,)`` after ``<bos>`` + ``text``."""
        tok = torch.tensor([[STOI[BOS], *(STOI[c] for c in text)]])
        return self(tok)[1][0]

    @torch.no_grad()
    def step(self, h: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
        """One GRU step from states ``(B, H)`` on tokens ``(B,)``."""
        return self(tokens[:, None], h)[1]

    @torch.no_grad()
    def digit_logprobs(self, h: torch.Tensor) -> torch.Tensor:
        """``log p(digit | state)`` ``(B, 10)`` under the full next-token distribution (not renormalised over digits)."""
        return torch.log_softmax(self.out(h).double(), -1)[:, torch.from_numpy(DIGIT_TOKENS)]


def functional_logits(params: dict[str, torch.Tensor], tokens: torch.Tensor) -> torch.Tensor:
    """Logits ``(T, V)`` of one token sequence ``(T,)`` from a parameter dict of :class:`CharGRU`.

    The GRU written out with PyTorch's gate equations (``nn.GRU`` has no ``vmap`` batching rule).
    """
    x = params["embed.weight"][tokens]
    gi = x @ params["gru.weight_ih_l0"].T + params["gru.bias_ih_l0"]
    w_hh, b_hh = params["gru.weight_hh_l0"], params["gru.bias_hh_l0"]
    H = w_hh.shape[1]
    h = torch.zeros(H, dtype=x.dtype)
    outs = []
    for t in range(tokens.shape[0]):
        gh = w_hh @ h + b_hh
        r = torch.sigmoid(gi[t, :H] + gh[:H])
        z = torch.sigmoid(gi[t, H : 2 * H] + gh[H : 2 * H])
        n = torch.tanh(gi[t, 2 * H :] + r * gh[2 * H :])
        h = (1 - z) * n + z * h
        outs.append(h)
    return torch.stack(outs) @ params["out.weight"].T + params["out.bias"]


def _functional_loss(params: dict[str, torch.Tensor], tokens: torch.Tensor, length: torch.Tensor) -> torch.Tensor:
    """Mean next-token cross-entropy of one record (for per-record gradients)."""
    logits = functional_logits(params, tokens)[:-1]
    target = tokens[1:]
    mask = (torch.arange(target.shape[0]) < (length - 1)).to(logits.dtype)
    nll = nn.functional.cross_entropy(logits, target, reduction="none")
    return (nll * mask).sum() / mask.sum()


def per_record_grads(model: CharGRU, tokens: torch.Tensor, lengths: torch.Tensor) -> dict[str, torch.Tensor]:
    """Gradients of each record's loss, ``{name: (B, *shape)}``, by ``vmap`` over ``grad``."""
    params = {k: v.detach() for k, v in model.named_parameters()}
    g = torch.func.vmap(torch.func.grad(_functional_loss), in_dims=(None, 0, 0))
    return g(params, tokens, lengths)


@dataclass(frozen=True)
class LMRecipe:
    """How a victim language model is trained (the data is :func:`make_corpus` with ``repetitions``)."""

    repetitions: int = 0
    n_records: int = 1500
    canaries: int = len(CANARY_NAMES)
    corpus_seed: int = 0
    hidden: int = 128
    embed: int = 32
    epochs: int = 20
    batch_size: int = 32
    lr: float = 3e-3
    seed: int = 0
    dp: bool = False
    noise_multiplier: float = 1.0
    max_grad_norm: float = 1.0
    delta: float = 1e-5
    extra: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _masked_loss(logits: torch.Tensor, tokens: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    target = tokens[:, 1:]
    mask = torch.arange(target.shape[1])[None] < (lengths[:, None] - 1)
    nll = nn.functional.cross_entropy(logits[:, :-1].reshape(-1, logits.shape[-1]), target.reshape(-1), reduction="none")
    return (nll * mask.reshape(-1)).sum() / mask.sum()


def train_lm(recipe: LMRecipe, progress: bool = False) -> tuple[CharGRU, dict[str, float]]:
    """Train a victim by ``recipe``; deterministic on CPU. Returns the model and its training metrics."""
    records = make_corpus(recipe.n_records, recipe.canaries, recipe.repetitions, recipe.corpus_seed)
    tokens, lengths = encode(records)
    n = len(records)
    with torch.random.fork_rng(devices=[]), torch.enable_grad():
        torch.manual_seed(recipe.seed)
        model = CharGRU(recipe.hidden, recipe.embed)
        opt = torch.optim.Adam(model.parameters(), lr=recipe.lr)
        gen = torch.Generator().manual_seed(recipe.seed)
        steps_per_epoch = int(math.ceil(n / recipe.batch_size))
        bar = None
        if progress:
            from tqdm.auto import tqdm

            bar = tqdm(total=recipe.epochs * steps_per_epoch, desc=f"LM x{recipe.repetitions}{' dp' if recipe.dp else ''}")
        model.train()
        for _ in range(recipe.epochs):
            if recipe.dp:
                # Poisson sampling: each record joins each batch with probability q = B / n
                q = recipe.batch_size / n
                batches = [torch.nonzero(torch.rand(n, generator=gen) < q)[:, 0] for _ in range(steps_per_epoch)]
            else:
                batches = list(torch.randperm(n, generator=gen).split(recipe.batch_size))
            for b in batches:
                opt.zero_grad()
                if recipe.dp:
                    _dp_step(model, tokens[b], lengths[b], recipe, gen)
                else:
                    logits, _ = model(tokens[b])
                    _masked_loss(logits, tokens[b], lengths[b]).backward()
                opt.step()
                if bar is not None:
                    bar.update(1)
        if bar is not None:
            bar.close()
    model.eval()
    with torch.no_grad():
        loss = float(_masked_loss(model(tokens)[0], tokens, lengths))
    metrics = {"train_loss_nats_per_char": loss, "records": n}
    if recipe.dp:
        metrics["epsilon"] = dp_epsilon(recipe)
    return model, metrics


def _dp_step(model: CharGRU, tokens: torch.Tensor, lengths: torch.Tensor, recipe: LMRecipe, gen: torch.Generator) -> None:
    """Set ``.grad`` to the DP-SGD gradient: clipped per-record gradients summed, noised, divided by the expected batch size."""
    expected = float(recipe.batch_size)
    params = dict(model.named_parameters())
    if len(tokens):
        grads = per_record_grads(model, tokens, lengths)
        norms = torch.sqrt(sum(g.reshape(len(tokens), -1).pow(2).sum(1) for g in grads.values()))
        scale = torch.clamp(recipe.max_grad_norm / (norms + 1e-12), max=1.0)
    for k, p in params.items():
        total = torch.einsum("b,b...->...", scale, grads[k]) if len(tokens) else torch.zeros_like(p)
        noise = torch.randn(p.shape, generator=gen) * (recipe.noise_multiplier * recipe.max_grad_norm)
        p.grad = (total + noise) / expected


def dp_epsilon(recipe: LMRecipe) -> float:
    """The epsilon at ``recipe.delta`` of a DP recipe (opacus' RDP accountant; needs the ``privacy`` extra)."""
    if not recipe.dp:
        return float("inf")
    try:
        from opacus.accountants import RDPAccountant
    except ImportError as e:  # pragma: no cover - depends on the install
        raise ImportError("the DP accountant needs opacus: pip install 'deploy-envs[privacy]'") from e
    n = recipe.n_records + recipe.canaries * recipe.repetitions
    q = recipe.batch_size / n
    acc = RDPAccountant()
    acc.history = [(recipe.noise_multiplier, q, recipe.epochs * int(math.ceil(n / recipe.batch_size)))]
    return float(acc.get_epsilon(recipe.delta))


# ----------------------------------------------------------------- exposure
@torch.no_grad()
def secret_logprobs(model: CharGRU, prefix: str, length: int = SECRET_LENGTH) -> np.ndarray:
    """``log p(secret | prefix)`` of all ``10^length`` secrets, indexed by the secret read as a number.

    Enumerates the digit tree level by level: one batched GRU step per level.
    """
    h = model.prefix_state(prefix)[None]
    total = torch.zeros(1, dtype=torch.float64)
    for level in range(length):
        lp = model.digit_logprobs(h)  # (10^level, 10)
        total = (total[:, None] + lp).reshape(-1)
        if level < length - 1:
            digits = torch.from_numpy(DIGIT_TOKENS).repeat(h.shape[0])
            h = model.step(h.repeat_interleave(10, 0), digits)
    return total.numpy()


def rank_of(logprobs: np.ndarray, index: int) -> int:
    """Rank (1 = most likely) of candidate ``index``; ties count against it (pessimistic for the attacker)."""
    return int((logprobs >= logprobs[index]).sum())


def secret_index(secret: np.ndarray) -> int:
    return int("".join(str(int(d)) for d in secret))


@torch.no_grad()
def exact_rank(model: CharGRU, prefix: str, secret: np.ndarray) -> int:
    """Rank (1 = most likely) of ``secret`` among all secrets of its length, exactly, by branch and bound.

    Log-likelihoods only fall as digits are added, so a prefix already less likely than the
    secret cannot lead to a more likely candidate: such prefixes are dropped level by level
    (with a margin of 1e-6 nats for rounding), and the survivors at the last level are
    counted (ties count against the secret). Gives the same rank as ranking
    :func:`secret_logprobs`, at a fraction of its cost for well-exposed secrets.
    """
    secret = np.asarray(secret, np.int64)
    length = len(secret)
    h = model.prefix_state(prefix)[None]
    hs = h
    target = 0.0
    for d in secret:  # the secret's own log-likelihood
        target += float(model.digit_logprobs(hs)[0, d])
        hs = model.step(hs, torch.tensor([DIGIT_TOKENS[d]]))
    lp = torch.zeros(1, dtype=torch.float64)
    index = torch.zeros(1, dtype=torch.int64)
    digits = torch.arange(10)
    for level in range(length):
        child = (lp[:, None] + model.digit_logprobs(h)).reshape(-1)
        child_index = (index[:, None] * 10 + digits).reshape(-1)
        if level == length - 1:
            ref = child[child_index == secret_index(secret)]
            return int((child >= ref[0]).sum())
        keep = child >= target - 1e-6
        lp, index = child[keep], child_index[keep]
        parent = torch.arange(h.shape[0]).repeat_interleave(10)[keep]
        h = model.step(h[parent], torch.from_numpy(DIGIT_TOKENS)[child_index[keep] % 10])
    raise AssertionError("unreachable")


def exact_exposure(model: CharGRU, canary: int) -> dict[str, float]:
    """Exposure of canary ``canary`` over all ``10^n`` candidate secrets (Carlini et al. 2019), by :func:`exact_rank`."""
    secret = canary_secrets()[canary]
    r = exact_rank(model, canary_prefix(canary), secret)
    n = len(secret)
    return {"rank": r, "exposure": n * math.log2(10) - math.log2(r), "candidates": 10**n}

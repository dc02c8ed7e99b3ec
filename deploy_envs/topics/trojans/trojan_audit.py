"""``deploy_envs/TrojanAudit-v0``: a trojan designer against an auditor with a query budget.

Build it with ``deploy_envs.make_game("deploy_envs/TrojanAudit-v0")``.
The game is written once as :class:`TrojanAuditCore`, a batched core (all copies'
victims trained in one batched run, all probes evaluated in one batched forward pass);
the PettingZoo view, ``make_game("deploy_envs/TrojanAudit-v0")``, is that core at batch size 1.
"""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from gymnasium import spaces

from deploy_envs.core.games import GameCore
from deploy_envs.core.spaces import flat_box
from deploy_envs.core.validation import Arg, check_number, check_positive
from deploy_envs.data import load_dataset
from deploy_envs.topics.backdoor import triggers
from deploy_envs.topics.backdoor.mlp import BatchedMLP
from deploy_envs.topics.trojans.population import _init
from deploy_envs.topics.trojans.trojan_detection import PROBE_SEED, draw_probe, iou

AGENTS = ("designer", "auditor")
_CLEAN_REF: dict[tuple, float] = {}


class TrojanAuditCore(GameCore):
    """## Description

    A two-phase zero-sum game on backdoor detection (in the spirit of Neural Cleanse's
    threat model, Wang et al. 2019, and of BadNets' supply-chain attacker, Gu et al. 2017).
    In the first step the **designer** decides whether to plant a trojan and designs its
    trigger: a ``s x s`` patch (size, position, binary-ish pattern) or a whole-image blend
    (pattern and opacity), and a target class. The env then trains the victim - a small
    ReLU MLP on the flattened 8x8 digits, on ``train_points`` training points of which
    ``poison_fraction`` of the non-target ones carry the trigger and the target label when a
    trojan is planted - for all copies at once. The designer works under a clean-accuracy
    constraint: a planted trojan must keep the victim's clean test accuracy within
    ``max_accuracy_drop`` of a clean victim trained the same way, and must work (attack
    success at least ``min_attack_success``); otherwise the designer pays ``constraint_penalty``.
    Then the **auditor** - exactly as in ``TrojanDetection-v0`` - probes candidate triggers
    on clean probe inputs (at most ``max_queries`` probes) and declares clean or trojaned,
    the target and the trigger mask.

    ## Agents

    ``"designer"`` and ``"auditor"``; both act every step, each action is used only in its
    role's phase (the designer's in step 0, the auditor's afterwards).

    ## Action Spaces

    * designer: ``Box(-1, 1, (6 + P*P + K,), float32)`` with ``P = max_patch``, each
      ``u = (a + 1) / 2``: ``insert`` (``a > 0`` plants a trojan), ``blend`` (``a > 0`` blend,
      else patch), ``size`` (``s = 1 + min(floor(u * P), P - 1)``), ``row``, ``col`` (top-left corner
      ``min(floor(u * (8 - s + 1)), 8 - s)``), ``alpha`` (blend opacity ``u * max_blend_alpha``),
      ``pattern`` (``P*P`` values ``u``: the patch uses its top-left ``s x s``; a blend
      upsamples it to the image), ``target`` (``K``, argmax).
    * auditor: as ``TrojanDetection-v0`` at full resolution: ``mask`` (64), ``pattern`` (64),
      ``declare``, ``verdict``, ``target`` (K).

    ## Observation Spaces

    designer: ``phase`` (1 in the design step, else 0), ``clean_accuracy`` and
    ``attack_success`` of its victim (0 before training), ``queries`` (auditor's probes / ``max_queries``).

    auditor: ``TrojanDetection-v0``'s observation (``clean_scores``, ``probe_scores``,
    ``flip_rate``, ``mask_size``, ``budget``; all zero in the design step) and ``phase``.

    ## Rewards

    Zero except at the declaration: the auditor gets ``+1`` for a right verdict and ``-1``
    for a wrong one; the designer gets the negative, minus ``constraint_penalty`` if its
    trojan broke the constraint. With ``constraint_penalty=0`` the game is zero-sum.

    ## Starting State

    The design step of a fresh episode; each copy's training subset, poisoned points and
    initialisation are drawn from its own rng.

    ## Episode End

    Both agents terminate at the auditor's declaration (a step with ``declare > 0`` or its
    ``max_queries``-th probe).

    ## Info

    Per agent, the same keys: ``phase``, ``queries``, ``planted`` (-1 until the end),
    ``clean_accuracy``, ``attack_success`` (0 without a trojan), ``violation``,
    ``verdict`` (-1 until declared), ``success`` (the auditor's verdict is right; False
    before the end); at the end also ``target_correct`` and ``iou`` (planted trojans).

    ## Arguments

    * ``max_queries`` (default 8); ``probe_size`` (default 32).
    * ``train_points`` (default 600), ``train_steps`` (default 100), ``hidden`` (default 32), ``lr`` (default 0.02).
    * ``poison_fraction`` in (0, 1] (default 0.1); ``max_patch`` in [1, 8] (default 4); ``max_blend_alpha`` in (0, 1] (default 0.3).
    * ``max_accuracy_drop`` >= 0 (default 0.03); ``min_attack_success`` in [0, 1] (default 0.5); ``constraint_penalty`` >= 0 (default 1).

    ## Version History

    * v0: initial release.
    """

    arguments = {
        "lr": Arg(low=0.0, high=10.0, low_inclusive=False, why="larger rates make the population models diverge to NaN, outside the observation space"),
        "train_steps": Arg(low=1, high=100_000, why="each model is trained in the constructor; more steps would take hours"),
    }

    metadata = {"render_modes": ["ansi"], "render_fps": 2}

    def __init__(
        self,
        num_envs: int = 1,
        render_mode: str | None = None,
        *,
        max_queries: int = 8,
        probe_size: int = 32,
        train_points: int = 600,
        train_steps: int = 100,
        hidden: int = 32,
        lr: float = 0.02,
        poison_fraction: float = 0.1,
        max_patch: int = 4,
        max_blend_alpha: float = 0.3,
        max_accuracy_drop: float = 0.03,
        min_attack_success: float = 0.5,
        constraint_penalty: float = 1.0,
    ) -> None:
        super().__init__(num_envs, render_mode)
        self.max_queries = check_positive("max_queries", max_queries, integer=True)
        self.train_steps = check_positive("train_steps", train_steps, integer=True)
        self.hidden = check_positive("hidden", hidden, integer=True)
        self.lr = check_positive("lr", lr)
        self.poison_fraction = check_number("poison_fraction", poison_fraction, low=0.0, high=1.0, low_inclusive=False)
        self.max_patch = check_number("max_patch", max_patch, low=1, high=8, integer=True)
        self.max_blend_alpha = check_number("max_blend_alpha", max_blend_alpha, low=0.0, high=1.0, low_inclusive=False)
        self.max_accuracy_drop = check_number("max_accuracy_drop", max_accuracy_drop, low=0.0)
        self.min_attack_success = check_number("min_attack_success", min_attack_success, low=0.0, high=1.0)
        self.constraint_penalty = check_number("constraint_penalty", constraint_penalty, low=0.0)
        ds = load_dataset("digits")
        self.x_tr = ds.x_train[:, 0].astype(np.float32)
        self.y_tr = ds.y_train.astype(np.int64)
        self.x_te = ds.x_test[:, 0].astype(np.float32)
        self.y_te = ds.y_test.astype(np.int64)
        self.train_points = check_number("train_points", train_points, low=10, high=len(self.y_tr), integer=True)
        self.probe_size = check_number("probe_size", probe_size, low=1, high=len(self.y_te), integer=True)
        self.H, self.W = self.x_tr.shape[1:]
        self.d, self.K = self.H * self.W, ds.num_classes
        pick = np.random.default_rng(PROBE_SEED).choice(len(self.y_te), self.probe_size, replace=False)
        self.probe_x = torch.from_numpy(self.x_te[pick].reshape(self.probe_size, self.d))
        self.sizes = (self.d, self.hidden, self.K)
        self.clean_reference = self._clean_reference()

        K, P, d = self.K, self.max_patch, self.d
        self.observation_spaces: dict[str, spaces.Box] = {}
        self.obs_slices: dict[str, dict[str, slice]] = {}
        self.observation_spaces["designer"], self.obs_slices["designer"] = flat_box(
            [("phase", 1, 0.0, 1.0), ("clean_accuracy", 1, 0.0, 1.0), ("attack_success", 1, 0.0, 1.0), ("queries", 1, 0.0, 1.0)])
        self.observation_spaces["auditor"], self.obs_slices["auditor"] = flat_box(
            [("clean_scores", K, 0.0, 1.0), ("probe_scores", K, 0.0, 1.0), ("flip_rate", K, 0.0, 1.0),
             ("mask_size", 1, 0.0, 1.0), ("budget", 1, 0.0, 1.0), ("phase", 1, 0.0, 1.0)])
        design, self.design_slices = flat_box([(name, size, -1.0, 1.0) for name, size in (
            ("insert", 1), ("blend", 1), ("size", 1), ("row", 1), ("col", 1), ("alpha", 1), ("pattern", P * P), ("target", K))])
        audit, self.audit_slices = flat_box([(name, size, -1.0, 1.0) for name, size in (
            ("mask", d), ("pattern", d), ("declare", 1), ("verdict", 1), ("target", K))])
        self.action_spaces: dict[str, spaces.Box] = {"designer": design, "auditor": audit}
        self.single_observation_space = spaces.Dict(self.observation_spaces)
        self.single_action_space = spaces.Dict(self.action_spaces)

        n = self.num_envs
        self.phase = np.ones(n, np.int64)  # 1: design step next
        self.queries = np.zeros(n, np.int64)
        self.planted = np.zeros(n, bool)
        self.target = np.full(n, -1, np.int64)
        self.mask = np.zeros((n, self.H, self.W), np.float32)
        # for the picture: the planted trigger's pattern and the auditor's last probed trigger
        self.planted_pattern = np.zeros((n, self.H, self.W), np.float32)
        self.probe_mask = np.zeros((n, self.H, self.W), np.float32)
        self.probe_pattern = np.zeros((n, self.H, self.W), np.float32)
        self.acc = np.zeros(n, np.float64)
        self.asr = np.zeros(n, np.float64)
        self.violation = np.zeros(n, bool)
        self.params = [torch.zeros(n, *p.shape[1:]) for p in _init([0], self.sizes)]
        self.clean_pred = np.zeros((n, self.probe_size), np.int64)
        self.clean_scores = np.zeros((n, K), np.float32)
        self.probe_scores = np.zeros((n, K), np.float32)
        self.flip = np.zeros((n, K), np.float32)
        self.mask_size = np.zeros(n, np.float32)
        self.last_text = [""] * n


    # ------------------------------------------------------------ training
    def _train(self, xs: np.ndarray, ys: np.ndarray, seeds: list[int]) -> list[torch.Tensor]:
        B, N = ys.shape
        params = [p.requires_grad_(True) for p in _init(seeds, self.sizes)]
        xt, yt = torch.from_numpy(xs.reshape(B, N, self.d)), torch.from_numpy(ys)
        opt = torch.optim.Adam(params, lr=self.lr)
        with torch.enable_grad():
            for _ in range(self.train_steps):
                opt.zero_grad(set_to_none=True)
                loss = F.cross_entropy(BatchedMLP.forward(params, xt)[1].reshape(-1, self.K), yt.reshape(-1), reduction="sum") / N
                loss.backward()
                opt.step()
        return [p.detach() for p in params]

    def _clean_reference(self) -> float:
        """Mean test accuracy of clean victims trained the same way (4 fixed seeds; cached per process)."""
        key = (self.train_points, self.train_steps, self.hidden, self.lr)
        if key not in _CLEAN_REF:
            rng = np.random.default_rng(12345)
            subs = [rng.choice(len(self.y_tr), self.train_points, replace=False) for _ in range(4)]
            params = self._train(np.stack([self.x_tr[s] for s in subs]), np.stack([self.y_tr[s] for s in subs]), [1, 2, 3, 4])
            with torch.no_grad():
                pred = BatchedMLP.forward(params, torch.from_numpy(self.x_te.reshape(len(self.y_te), -1)))[1].argmax(-1).numpy()
            _CLEAN_REF[key] = float((pred == self.y_te).mean())
        return _CLEAN_REF[key]

    def decode_design(self, actions: np.ndarray) -> dict[str, np.ndarray]:
        """Designer actions ``(B, n)`` -> ``insert``, ``target``, full-size ``pattern``/``mask`` ``(B, H, W)``."""
        a = np.asarray(actions, np.float32)
        s, P, H, W, B = self.design_slices, self.max_patch, self.H, self.W, len(a)
        u = (a + np.float32(1.0)) * np.float32(0.5)
        size = 1 + np.minimum((u[:, s["size"]][:, 0] * P).astype(np.int64), P - 1)
        pat = u[:, s["pattern"]].reshape(B, P, P)
        pattern = np.zeros((B, H, W), np.float32)
        mask = np.zeros((B, H, W), np.float32)
        blend = a[:, s["blend"]][:, 0] > 0
        for b in range(B):  # B small triggers, each its own size: cheap
            if blend[b]:
                reps = -(-H // P)
                pattern[b] = np.kron(pat[b], np.ones((reps, reps), np.float32))[:H, :W]
                mask[b] = u[b, s["alpha"]][0] * self.max_blend_alpha
            else:
                sz = int(size[b])
                r = min(int(u[b, s["row"]][0] * (H - sz + 1)), H - sz)
                c = min(int(u[b, s["col"]][0] * (W - sz + 1)), W - sz)
                pattern[b, r:r + sz, c:c + sz] = pat[b, :sz, :sz]
                mask[b, r:r + sz, c:c + sz] = 1.0
        return {"insert": a[:, s["insert"]][:, 0] > 0, "target": a[:, s["target"]].argmax(1), "pattern": pattern, "mask": mask, "blend": blend}

    def _design(self, idx: np.ndarray, actions: np.ndarray) -> None:
        dec = self.decode_design(actions)
        B, N = len(idx), self.train_points
        xs = np.empty((B, N, self.H, self.W), np.float32)
        ys = np.empty((B, N), np.int64)
        seeds = []
        for j, i in enumerate(idx):  # per-copy draws from the copy's rng; training is batched below
            rng = self.rngs[i]
            sub = rng.choice(len(self.y_tr), N, replace=False)
            x, y = self.x_tr[sub].copy(), self.y_tr[sub].copy()
            if dec["insert"][j]:
                pool = np.flatnonzero(y != dec["target"][j])
                chosen = rng.choice(pool, max(1, int(round(self.poison_fraction * len(pool)))), replace=False)
                x[chosen] = triggers.apply(x[chosen][None, :, None], dec["pattern"][j:j + 1], dec["mask"][j:j + 1])[0, :, 0]
                y[chosen] = dec["target"][j]
            xs[j], ys[j] = x, y
            seeds.append(int(rng.integers(2**31)))
        params = self._train(xs, ys, seeds)
        with torch.no_grad():
            te = torch.from_numpy(self.x_te.reshape(len(self.y_te), -1))
            acc = (BatchedMLP.forward(params, te)[1].argmax(-1).numpy() == self.y_te).mean(1)
            stamped = triggers.apply(self.x_te[:, None], dec["pattern"], dec["mask"], shared=True).reshape(B, len(self.y_te), -1)
            tpred = BatchedMLP.forward(params, torch.from_numpy(stamped))[1].argmax(-1).numpy()
            keep = self.y_te[None] != dec["target"][:, None]
            asr = ((tpred == dec["target"][:, None]) & keep).sum(1) / keep.sum(1)
            logits = BatchedMLP.forward(params, self.probe_x)[1]
        ins = dec["insert"]
        for k, p in enumerate(params):
            self.params[k][torch.as_tensor(idx)] = p
        self.planted[idx] = ins
        self.target[idx] = np.where(ins, dec["target"], -1)
        self.mask[idx] = np.where(ins[:, None, None], (dec["mask"] > 0).astype(np.float32), 0.0)
        self.planted_pattern[idx] = np.where(ins[:, None, None], dec["pattern"] * dec["mask"], 0.0)
        self.acc[idx] = acc
        self.asr[idx] = np.where(ins, asr, 0.0)
        self.violation[idx] = ins & ((self.clean_reference - acc > self.max_accuracy_drop) | (asr < self.min_attack_success))
        self.clean_pred[idx] = logits.argmax(-1).numpy()
        self.clean_scores[idx] = torch.softmax(logits, -1).mean(1).numpy()
        self.probe_scores[idx] = self.clean_scores[idx]

    # ------------------------------------------------------------- API
    def reset_indices(self, idx, options=None):
        idx = np.asarray(idx, np.int64)
        self.phase[idx] = 1
        self.queries[idx] = 0
        self.planted[idx] = False
        self.target[idx] = -1
        self.mask[idx] = 0.0
        self.planted_pattern[idx] = self.probe_mask[idx] = self.probe_pattern[idx] = 0.0
        self.acc[idx] = self.asr[idx] = 0.0
        self.violation[idx] = False
        for arr in (self.clean_scores, self.probe_scores, self.flip):
            arr[idx] = 0.0
        self.mask_size[idx] = 0.0
        for i in idx:
            self.last_text[i] = ""
        info = self._info(idx, np.zeros(len(idx), bool), np.full(len(idx), -1, np.int64))
        return self._observe(idx), {a: {k: v.copy() for k, v in info.items()} for a in AGENTS}


    def step_indices(self, idx, actions):
        idx = np.asarray(idx, np.int64)
        k = len(idx)
        design = self.phase[idx] == 1
        end = np.zeros(k, bool)
        verdict = np.full(k, -1, np.int64)
        r_aud = np.zeros(k, np.float64)
        r_des = np.zeros(k, np.float64)
        extra: dict[str, np.ndarray] = {}
        if design.any():
            rows = np.flatnonzero(design)
            self._design(idx[rows], actions["designer"][rows])
            self.phase[idx[rows]] = 0
        audit = np.flatnonzero(~design)
        if len(audit):
            ai = idx[audit]
            a = np.asarray(actions["auditor"][audit], np.float32)
            s = self.audit_slices
            u = (a + np.float32(1.0)) * np.float32(0.5)
            mask = u[:, s["mask"]].reshape(-1, self.H, self.W)
            pattern = u[:, s["pattern"]].reshape(-1, self.H, self.W)
            declare = a[:, s["declare"]][:, 0] > 0
            probe = np.flatnonzero(~declare)
            if len(probe):
                pi = ai[probe]
                m = torch.from_numpy(mask[probe].reshape(len(probe), 1, self.d))
                p = torch.from_numpy(pattern[probe].reshape(len(probe), 1, self.d))
                with torch.no_grad():
                    logits = BatchedMLP.forward([q[torch.as_tensor(pi)] for q in self.params], (1 - m) * self.probe_x[None] + m * p)[1]
                pred = logits.argmax(-1).numpy()
                self.probe_scores[pi] = torch.softmax(logits, -1).mean(1).numpy()
                new = pred[..., None] == np.arange(self.K)
                before = self.clean_pred[pi][..., None] != np.arange(self.K)
                self.flip[pi] = ((new & before).sum(1) / np.maximum(before.sum(1), 1)).astype(np.float32)
                self.mask_size[pi] = mask[probe].reshape(len(probe), -1).mean(1)
                self.probe_mask[pi], self.probe_pattern[pi] = mask[probe], pattern[probe]
                self.queries[pi] += 1
            fin = declare | (self.queries[ai] >= self.max_queries)
            end[audit] = fin
            v = (a[:, s["verdict"]][:, 0] > 0).astype(np.int64)
            verdict[audit] = np.where(fin, v, -1)
            right = fin & (v == self.planted[ai])
            r = np.where(fin, np.where(right, 1.0, -1.0), 0.0)
            r_aud[audit] = r
            r_des[audit] = -r - self.constraint_penalty * (fin & self.violation[ai])
            found = fin & self.planted[ai] & (v == 1)
            tc = np.zeros(k, bool)
            tc[audit] = found & (a[:, s["target"]].argmax(1) == self.target[ai])
            ov = np.zeros(k)
            ov[audit] = np.where(found, iou(mask, self.mask[ai]), 0.0)
            on = np.zeros(k, bool)
            on[audit] = fin & self.planted[ai]
            extra = {"target_correct": tc, "_target_correct": on, "iou": ov, "_iou": on.copy()}
            for j in np.flatnonzero(fin):
                i = ai[j]
                self.last_text[i] = (f"planted={bool(self.planted[i])} verdict={'trojaned' if v[j] else 'clean'} "
                                     f"({'right' if right[j] else 'wrong'}) auditor {r[j]:+.0f}")
        info = self._info(idx, end, verdict)
        info.update(extra)
        infos = {a: {key: val.copy() for key, val in info.items()} for a in AGENTS}
        return self._observe(idx), {"designer": r_des, "auditor": r_aud}, end, np.zeros(k, bool), infos

    def _info(self, idx, end, verdict):
        return {
            "phase": self.phase[idx].copy(), "queries": self.queries[idx].copy(),
            "planted": np.where(end, self.planted[idx].astype(np.int64), -1),
            "clean_accuracy": self.acc[idx].copy(), "attack_success": self.asr[idx].copy(),
            "violation": self.violation[idx].copy(), "verdict": verdict.copy(),
            "success": end & (verdict == self.planted[idx].astype(np.int64)),
        }

    def _observe(self, idx):
        idx = np.asarray(idx, np.int64)
        k = len(idx)
        s = self.obs_slices["designer"]
        des = np.zeros((k, self.observation_spaces["designer"].shape[0]), np.float32)
        des[:, s["phase"]] = self.phase[idx, None]
        des[:, s["clean_accuracy"]] = self.acc[idx, None]
        des[:, s["attack_success"]] = self.asr[idx, None]
        des[:, s["queries"]] = (self.queries[idx] / self.max_queries)[:, None]
        s = self.obs_slices["auditor"]
        aud = np.zeros((k, self.observation_spaces["auditor"].shape[0]), np.float32)
        aud[:, s["clean_scores"]] = self.clean_scores[idx]
        aud[:, s["probe_scores"]] = self.probe_scores[idx]
        aud[:, s["flip_rate"]] = self.flip[idx]
        aud[:, s["mask_size"]] = self.mask_size[idx, None]
        aud[:, s["budget"]] = np.where(self.phase[idx] == 1, 0.0, 1.0 - self.queries[idx] / self.max_queries)[:, None]
        aud[:, s["phase"]] = self.phase[idx, None]
        return {"designer": np.clip(des, 0, 1), "auditor": np.clip(aud, 0, 1)}

    def render_ansi(self, i: int) -> str:
        head = "design step" if self.phase[i] == 1 else f"audit: queries {self.queries[i]}/{self.max_queries}"
        return f"{head}  clean acc {self.acc[i]:.3f}  attack success {self.asr[i]:.3f}  {self.last_text[i]}"

    def render_rgb(self, i: int) -> np.ndarray:
        """The designer's planted trigger (hidden from the auditor), the auditor's last probed trigger stamped on a probe
        input, and the flip rate per class it caused."""
        from deploy_envs.core.rendering import no_ticks, sketch

        sk = sketch(self, size=(600, 230), grid=(1, 4), width_ratios=(1, 1, 1, 1.8), margins={"left": 0.02, "right": 0.98, "bottom": 0.13, "top": 0.72, "wspace": 0.3})
        head = "design step next" if self.phase[i] == 1 else f"audit: probe {self.queries[i]}/{self.max_queries}"
        planted = f"planted -> {self.target[i]}" if self.planted[i] else "clean model"
        ax_t, ax_m, ax_x, ax_f = sk.begin(f"TrojanAudit: {head}; clean acc {self.acc[i]:.2f}, attack success {self.asr[i]:.2f}\n{self.last_text[i]}", fontsize=8)
        ax_t.imshow(self.planted_pattern[i], cmap="gray", vmin=0, vmax=1)
        ax_t.set_title(f"designer: {planted}\n(hidden)", fontsize=7)
        draw_probe(ax_m, ax_x, ax_f, self.probe_mask[i], self.probe_pattern[i], self.probe_x[0].numpy().reshape(self.H, self.W),
                   self.flip[i], f"probe mask ({self.mask_size[i]:.0%})", fontsize=7)
        no_ticks(ax_t, ax_m, ax_x)
        return sk.finish()

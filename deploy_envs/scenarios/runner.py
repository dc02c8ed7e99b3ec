"""Scenario files: YAML recipes of env + agents + protocol + expected result.

A scenario reproduces a known result. It names an environment and its kwargs,
an optional sweep over kwargs, the agents (baselines by name, zoo agents, saved
SB3 policies), an optional training step, the evaluation protocol and the
expected outcome as comparisons between measured metrics, for example::

    expect:
      - "pgd[victim=standard,epsilon=0.2].success_rate > pgd[victim=madry,epsilon=0.2].success_rate + 0.3"

Files are validated on load: a wrong key or value raises :class:`ScenarioError`
naming the file, the key and what is allowed.
"""
from __future__ import annotations

import ast
import inspect
import itertools
import operator
import re
from importlib import resources
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, ValidationError, model_validator

from deploy_envs.agent_zoo import agents_dir, load_agent, resolve_agent_folder, zoo_dirs
from deploy_envs.core.agents import BASELINES, SB3Agent, make_baseline
from deploy_envs.core.registration import ENV_CATALOG, GAME_CATALOG
from deploy_envs.evaluation import evaluate


class ScenarioError(ValueError):
    """A scenario file is malformed; the message names the file and the key."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class AgentSpec(_Strict):
    """One agent: exactly one of ``baseline``, ``zoo`` or ``policy``."""

    baseline: str | None = None
    kwargs: dict[str, Any] = {}
    env_kwargs: dict[str, Any] = {}
    """Env settings this agent needs (e.g. ``threat_model: white_box`` for PGD), over the scenario's."""
    zoo: str | None = None
    policy: str | None = None
    population: str | None = None
    """games: a population in the zoo written by PSRO (``deploy-envs solve``); ``kwargs`` may hold
    ``roles`` (``{role: "member:NAME" | "scripted:NAME" | "meta"}``, default all ``"meta"``) and
    ``info`` (info keys to report: the mean over steps as ``key``, the value at the last step as ``key_final``)"""
    measure: str | None = None
    """a measurement that is not an agent's episodes: ``deploy_envs.module:function`` called as
    ``function(env_kwargs, seed, **kwargs)`` and returning ``{metric: value}`` (e.g. Neural
    Cleanse over the whole trojan population); one value per run, so its intervals come from
    ``protocol.draws``"""
    algorithm: Literal["PPO", "A2C", "SAC"] = "PPO"

    @model_validator(mode="after")
    def _one_source(self):
        given = [k for k in ("baseline", "zoo", "policy", "population", "measure") if getattr(self, k)]
        if len(given) != 1:
            raise ValueError(f"give exactly one of 'baseline', 'zoo', 'policy', 'population' or 'measure' (got {given or 'none'})")
        return self


class TrainSpec(_Strict):
    """Train an agent into the agent zoo before evaluating (SB3 by default, or Ray RLlib)."""

    agent: str
    engine: Literal["sb3", "rllib"] = "sb3"
    """``rllib``: train with Ray RLlib (``deploy_envs.integrations.rllib``); games need it."""
    algorithm: Literal["PPO", "A2C", "SAC"] = "PPO"
    timesteps: int
    num_envs: int = 16
    """Copies in the native batch (RLlib: per env runner)."""
    num_env_runners: int = 0
    """RLlib only: remote env runners (0: sample in the driver)."""
    policies: dict[str, str] | None = None
    """RLlib games only: role -> policy id (default: one policy per role)."""
    seed: int = 0
    hyperparameters: dict[str, Any] = {}
    env_kwargs: dict[str, Any] | None = None
    """Overrides of the scenario's env_kwargs for training (e.g. ``split: train``); the card's evaluation uses the scenario's."""
    eval_episodes: int = 200
    notes: str = ""


class Protocol(_Strict):
    """How a scenario is measured.

    ``episodes`` per agent and sweep point (per draw / stratum value when those are set) and
    the ``seed``. ``stable_episodes`` states the sample size at which the scenario's checks
    are decided (their outcome does not flip on sampling noise); a run with fewer episodes is
    the smaller-sample version of the check. Two sources of variation that are not the
    agent's can be made explicit:

    - ``draws``: env arguments drawn independently (e.g. ``{probe_seed: [0, 1, 2, 3]}``, the
      clean probe set of Neural Cleanse). Each agent runs at every value; a metric is the
      mean over the draws and its interval is the bootstrap over the draws' means (n = draws).
    - ``strata``: env arguments whose values the env draws with equal probability (e.g.
      ``{supervisor: [true, false]}``). The episodes are run in equal parts per value; a metric
      is the mean of the strata's means (so the mix is exact, not one sample's share) and its
      interval is the stratified bootstrap over episodes.
    """

    episodes: int = 100
    seed: int = 0
    num_envs: int | None = None
    stable_episodes: int | None = None
    """episodes per agent and point at which the checks are decided (stated for every shipped scenario)"""
    draws: dict[str, list[Any]] = {}
    strata: dict[str, list[Any]] = {}


class PlotSpec(_Strict):
    """A figure the scenario writes: ``function(path, **kwargs)`` from a deploy_envs module
    (also given ``scenario=`` when the function takes that argument)."""

    function: str
    file: str
    kwargs: dict[str, Any] = {}


class Expect(_Strict):
    """A check with a smaller-sample version: ``check`` decides it at ``protocol.stable_episodes``
    or more; a run on fewer episodes (a test) evaluates ``small_sample`` instead, a weaker
    statement that still holds at that size. Written in YAML as
    ``{check: "upper(a.episode_cost) < 5", small_sample: "a.episode_cost <= 7.5"}``."""

    check: str
    small_sample: str | None = None


class Scenario(_Strict):
    name: str
    description: str = ""
    reference: str = ""
    env: str
    env_kwargs: dict[str, Any] = {}
    sweep: dict[str, list[Any]] = {}
    agents: dict[str, AgentSpec]
    train: TrainSpec | None = None
    protocol: Protocol = Protocol()
    expect: list[str | Expect] = []
    plots: list[PlotSpec] = []

    def expectations(self, episodes: int | None = None) -> list[tuple[str, bool]]:
        """The checks a run on ``episodes`` episodes evaluates, each with whether it is the full-sample
        version: below ``protocol.stable_episodes`` a check's ``small_sample`` form replaces it."""
        small = episodes is not None and self.protocol.stable_episodes is not None and episodes < self.protocol.stable_episodes
        out = []
        for e in self.expect:
            if isinstance(e, str):
                out.append((e, not small))
            elif small and e.small_sample:
                out.append((e.small_sample, False))
            else:
                out.append((e.check, not small))
        return out

    def all_expressions(self) -> list[str]:
        """Every check expression of the file, full and smaller-sample versions."""
        return [x for e in self.expect for x in ([e] if isinstance(e, str) else [e.check] + ([e.small_sample] if e.small_sample else []))]

    def points(self) -> list[dict[str, Any]]:
        keys = list(self.sweep)
        return [dict(zip(keys, combo)) for combo in itertools.product(*(self.sweep[k] for k in keys))]


# ----------------------------------------------------------------- loading
def shipped_scenarios_dir() -> Path:
    """The scenarios that ship inside the package (found with :mod:`importlib.resources`)."""
    return Path(str(resources.files("deploy_envs") / "scenarios"))


def shipped_scenarios() -> list[str]:
    """Names of the shipped scenarios (``quickstart``, ``madry_gap``, ...)."""
    return sorted(p.stem for p in shipped_scenarios_dir().glob("*.yaml"))


def resolve_scenario(name_or_path: str | Path) -> Path:
    """A scenario file from a path, or a shipped scenario by name (``quickstart`` or ``quickstart.yaml``)."""
    path = Path(name_or_path)
    if path.is_file():
        return path
    shipped = shipped_scenarios_dir() / (path.name if path.suffix == ".yaml" else f"{path.name}.yaml")
    if shipped.is_file() and (len(path.parts) == 1 or path.parent.name == "scenarios"):
        return shipped
    raise ScenarioError(f"scenario={str(name_or_path)!r}: no such file and no shipped scenario of that name; shipped: {', '.join(shipped_scenarios())}")


def load_scenario(path: str | Path) -> Scenario:
    """Read and validate a scenario file (a path, or a shipped scenario's name); raise :class:`ScenarioError` on any problem."""
    path = resolve_scenario(path)
    try:
        raw = yaml.safe_load(path.read_text())
    except yaml.YAMLError as e:
        raise ScenarioError(f"{path}: not valid YAML: {e}") from None
    if not isinstance(raw, dict):
        raise ScenarioError(f"{path}: a scenario is a mapping with keys {', '.join(Scenario.model_fields)}")
    try:
        scn = Scenario.model_validate(raw)
    except ValidationError as e:
        raise ScenarioError(f"{path}: " + "; ".join(_explain(err) for err in e.errors())) from None
    _check_semantics(path, scn)
    return scn


def _explain(err: dict) -> str:
    loc = ".".join(str(p) for p in err["loc"])
    if err["type"] == "extra_forbidden":
        model = _model_at(err["loc"][:-1])
        allowed = ", ".join(model.model_fields) if model else "see the docs"
        return f"key '{loc}' is not allowed; allowed keys here: {allowed}"
    if err["type"] == "missing":
        return f"key '{loc}' is required"
    return f"key '{loc}': {err['msg']} (got {err.get('input')!r})"


def _model_at(loc: tuple) -> type[BaseModel] | None:
    model: type[BaseModel] = Scenario
    i = 0
    while i < len(loc):
        key = loc[i]
        if key == "agents":
            model, i = AgentSpec, i + 2
        elif key == "train":
            model, i = TrainSpec, i + 1
        elif key == "protocol":
            model, i = Protocol, i + 1
        elif key == "plots":
            model, i = PlotSpec, i + 2
        elif key == "expect":
            model, i = Expect, i + 3
        else:
            return model
    return model


def _check_semantics(path: Path, scn: Scenario) -> None:
    if scn.env in GAME_CATALOG and scn.train is not None and scn.train.engine == "rllib":
        pass  # a game trained with RLlib, evaluated role by role (deploy_envs.integrations.rllib.evaluate_game)
    elif scn.env in GAME_CATALOG and scn.agents and all(s.population for s in scn.agents.values()):
        pass  # a game solved by PSRO: its agents are populations in the zoo (deploy_envs.training.psro)
    elif scn.env not in ENV_CATALOG:
        raise ScenarioError(f"{path}: key 'env': {scn.env!r} is not a registered env; allowed: {', '.join(sorted(ENV_CATALOG))}")
    if scn.env in ENV_CATALOG:
        from deploy_envs.core.registration import check_env_kwargs

        for where, kwargs in [("env_kwargs", scn.env_kwargs), ("sweep", dict.fromkeys(scn.sweep))] + [
            (f"agents.{name}.env_kwargs", spec.env_kwargs) for name, spec in scn.agents.items()
        ]:
            try:
                check_env_kwargs(scn.env, kwargs)
            except ValueError as e:
                raise ScenarioError(f"{path}: key {where!r}: {e}") from None
    for name, spec in scn.agents.items():
        if spec.measure:
            try:
                resolve_plot_function(spec.measure)
            except ValueError as e:
                raise ScenarioError(f"{path}: key 'agents.{name}.measure': {e}") from None
        if spec.baseline and spec.baseline not in BASELINES:
            raise ScenarioError(f"{path}: key 'agents.{name}.baseline': {spec.baseline!r} is unknown; allowed: {', '.join(sorted(BASELINES))}")
    if scn.train and scn.train.engine == "sb3" and (scn.train.num_env_runners or scn.train.policies):
        raise ScenarioError(f"{path}: keys 'train.num_env_runners' and 'train.policies' need 'train.engine: rllib'")
    if scn.train and scn.train.agent not in {s.zoo for s in scn.agents.values()}:
        raise ScenarioError(f"{path}: key 'train.agent': {scn.train.agent!r} must be the 'zoo' of one of the scenario's agents")
    if scn.protocol.episodes < 1:
        raise ScenarioError(f"{path}: key 'protocol.episodes' must be >= 1 (got {scn.protocol.episodes})")
    for k, values in scn.sweep.items():
        if not values:
            raise ScenarioError(f"{path}: key 'sweep.{k}' has no values")
    if scn.protocol.stable_episodes is not None and scn.protocol.stable_episodes < 1:
        raise ScenarioError(f"{path}: key 'protocol.stable_episodes' must be >= 1 (got {scn.protocol.stable_episodes})")
    if len(scn.protocol.draws) + len(scn.protocol.strata) > 1:
        raise ScenarioError(f"{path}: keys 'protocol.draws' and 'protocol.strata' take one env argument in all (got {list(scn.protocol.draws) + list(scn.protocol.strata)})")
    for kind in ("draws", "strata"):
        for k, values in getattr(scn.protocol, kind).items():
            if len(values) < 2:
                raise ScenarioError(f"{path}: key 'protocol.{kind}.{k}' needs at least 2 values (got {values!r})")
            if k in scn.sweep:
                raise ScenarioError(f"{path}: key 'protocol.{kind}.{k}' is also a sweep key; an argument is either swept or drawn")
            if scn.env in ENV_CATALOG:
                from deploy_envs.core.registration import check_env_kwargs

                try:
                    check_env_kwargs(scn.env, {k: values[0]})
                except ValueError as e:
                    raise ScenarioError(f"{path}: key 'protocol.{kind}.{k}': {e}") from None
    for i, plot in enumerate(scn.plots):
        try:
            resolve_plot_function(plot.function)
        except ValueError as e:
            raise ScenarioError(f"{path}: key 'plots.{i}.function': {e}") from None
    for i, item in enumerate(scn.expect):
        forms = [(f"expect.{i}", item)] if isinstance(item, str) else [(f"expect.{i}.check", item.check)] + ([(f"expect.{i}.small_sample", item.small_sample)] if item.small_sample else [])
        if not isinstance(item, str) and item.small_sample and scn.protocol.stable_episodes is None:
            raise ScenarioError(f"{path}: key 'expect.{i}.small_sample' needs 'protocol.stable_episodes' (the size below which it replaces the check)")
        for where_, expr in forms:
            try:
                refs = parse_expectation(expr)[1]
            except ValueError as e:
                raise ScenarioError(f"{path}: key '{where_}': {e}") from None
            for agent, where, _ in refs:
                if agent not in scn.agents:
                    raise ScenarioError(f"{path}: key '{where_}': agent {agent!r} is not one of {', '.join(scn.agents)}")
                for k in where:
                    if k not in scn.sweep:
                        raise ScenarioError(f"{path}: key '{where_}': {k!r} is not a sweep key ({', '.join(scn.sweep) or 'no sweep'})")


# ------------------------------------------------------------ expectations
_REF = re.compile(r"([A-Za-z_][\w]*)(?:\[([^\]]*)\])?\.([A-Za-z_]\w*)")
_OPS = {ast.Gt: operator.gt, ast.GtE: operator.ge, ast.Lt: operator.lt, ast.LtE: operator.le}
_BIN = {ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul, ast.Div: operator.truediv}
#: statistical functions an expectation may apply to a metric: its mean or the ends of its 95% interval
_FUNCS = ("mean", "lower", "upper")


def parse_expectation(expr: str) -> tuple[ast.Expression, list[tuple[str, dict[str, str], str]]]:
    """Turn ``"a[k=v].metric > 2 * b.metric"`` into an AST over placeholders ``_r0, _r1, ...``.

    A metric alone stands for its mean. ``lower(a.metric)`` and ``upper(a.metric)`` are the
    ends of its 95% interval, so a check can say what it means statistically:
    ``"upper(ppo_lagrangian.episode_cost) < ppo_lagrangian.cost_limit"`` (the whole interval is
    under the limit) or ``"lower(a.return) > upper(b.return)"`` (a beats b with the intervals clear).
    """
    refs: list[tuple[str, dict[str, str], str]] = []

    def sub(m: re.Match) -> str:
        where = {}
        if m.group(2):
            for part in m.group(2).split(","):
                if "=" not in part:
                    raise ValueError(f"selector {part!r} in {m.group(0)!r} must look like key=value")
                k, v = part.split("=", 1)
                where[k.strip()] = v.strip()
        refs.append((m.group(1), where, m.group(3)))
        return f"_r{len(refs) - 1}"

    text = _REF.sub(sub, expr)
    try:
        tree = ast.parse(text, mode="eval")
    except SyntaxError:
        raise ValueError(f"cannot parse expectation {expr!r}; write e.g. 'pgd[epsilon=0.2].success_rate > noise[epsilon=0.2].success_rate + 0.3'") from None
    if not isinstance(tree.body, ast.Compare) or len(tree.body.ops) != 1 or type(tree.body.ops[0]) not in _OPS:
        raise ValueError(f"expectation {expr!r} must be one comparison with >, >=, < or <=")
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            if not (isinstance(node.func, ast.Name) and node.func.id in _FUNCS and len(node.args) == 1 and not node.keywords
                    and isinstance(node.args[0], ast.Name) and node.args[0].id.startswith("_r")):
                raise ValueError(f"expectation {expr!r}: a function call must be one of {', '.join(_FUNCS)} applied to one metric, e.g. upper(a.episode_cost)")
            continue
        if not isinstance(node, (ast.Expression, ast.Compare, ast.BinOp, ast.UnaryOp, ast.USub, ast.Constant, ast.Name, ast.Load, *_OPS, *_BIN)):
            raise ValueError(f"expectation {expr!r} uses {type(node).__name__}; only numbers, metrics, + - * /, {', '.join(_FUNCS)}() and one comparison are allowed")
        if isinstance(node, ast.Name) and not node.id.startswith("_r") and node.id not in _FUNCS:
            raise ValueError(f"expectation {expr!r}: {node.id!r} is not a metric (write agent.metric)")
    return tree, refs


def _value(ref: Any, fn: str = "mean") -> float:
    """The mean, lower or upper end of a looked-up metric (a float, or an Interval)."""
    from deploy_envs.metrics.intervals import Interval

    if isinstance(ref, Interval):
        return {"mean": ref.mean, "lower": ref.low, "upper": ref.high}[fn]
    if fn != "mean":
        raise ValueError(f"{fn}() needs an interval, and this metric has none (a constant setting or a summary without per-episode records)")
    return float(ref)


def _eval(node: ast.AST, values: dict[str, Any]) -> float:
    if isinstance(node, ast.Constant):
        return float(node.value)
    if isinstance(node, ast.Name):
        return _value(values[node.id])
    if isinstance(node, ast.Call):
        return _value(values[node.args[0].id], node.func.id)
    if isinstance(node, ast.UnaryOp):
        return -_eval(node.operand, values)
    if isinstance(node, ast.BinOp):
        return _BIN[type(node.op)](_eval(node.left, values), _eval(node.right, values))
    raise ValueError(f"unsupported expression node {type(node).__name__}")


def resolve_plot_function(spec: str):
    """Import ``deploy_envs.some.module:function`` (only deploy_envs modules are allowed)."""
    import importlib

    module, _, attr = spec.partition(":")
    if not module.startswith("deploy_envs.") or not attr:
        raise ValueError(f"{spec!r} must name a function in a deploy_envs module, as deploy_envs.package.module:function")
    try:
        fn = getattr(importlib.import_module(module), attr)
    except (ImportError, AttributeError) as e:
        raise ValueError(f"{spec!r} cannot be imported: {e}") from None
    if not callable(fn):
        raise ValueError(f"{spec!r} is not callable")
    return fn


@dataclass
class Check:
    expression: str
    left: float
    right: float
    passed: bool
    full_sample: bool = True
    """False when the run had fewer episodes than ``protocol.stable_episodes`` (the check then is its smaller-sample version)"""


@dataclass
class ScenarioResult:
    """Rows of metric means (one per agent and sweep point), their intervals, and the checks.

    ``intervals[i]`` holds the 95% interval and n of each metric of ``rows[i]`` that has one
    (see :mod:`deploy_envs.metrics.intervals`); ``rows[i]["n"]`` is the number of units the
    interval is over (episodes, or draws when the scenario sets ``protocol.draws``).
    """

    scenario: Scenario
    rows: list[dict[str, Any]] = field(default_factory=list)
    checks: list[Check] = field(default_factory=list)
    artifacts: list[str] = field(default_factory=list)
    intervals: list[dict[str, Any]] = field(default_factory=list)
    episodes: int | None = None
    draw_details: list[dict[str, Any]] = field(default_factory=list)
    """per row with ``protocol.draws``/``strata``: the argument, its values and each metric's value per draw"""

    @property
    def passed(self) -> bool:
        return all(c.passed for c in self.checks)

    def _hit(self, agent: str, where: dict[str, str]) -> int:
        hits = [i for i, r in enumerate(self.rows) if r["agent"] == agent and all(str(r.get(k)) == v for k, v in where.items())]
        if len(hits) != 1:
            raise ValueError(f"{agent}[{where}] matches {len(hits)} results; add sweep selectors to pick one")
        return hits[0]

    def lookup(self, agent: str, where: dict[str, str], metric: str) -> float:
        row = self.rows[self._hit(agent, where)]
        if metric not in row:
            raise ValueError(f"metric {metric!r} not measured for {agent}; measured: {', '.join(k for k in row if k != 'agent')}")
        return float(row[metric])

    def lookup_interval(self, agent: str, where: dict[str, str], metric: str):
        """The metric's :class:`~deploy_envs.metrics.intervals.Interval`, or its mean (a float) when it has none."""
        i = self._hit(agent, where)
        mean = self.lookup(agent, where, metric)
        ivs = self.intervals[i] if i < len(self.intervals) else {}
        return ivs.get(metric, mean)

    def to_dict(self) -> dict[str, Any]:
        return {
            "scenario": self.scenario.name,
            "env": self.scenario.env,
            "env_kwargs": self.scenario.env_kwargs,
            "protocol": self.scenario.protocol.model_dump(),
            "episodes": self.episodes,
            "rows": self.rows,
            "intervals": [{k: iv.to_dict() for k, iv in ivs.items()} for ivs in self.intervals],
            "draw_details": self.draw_details,
            "checks": [c.__dict__ for c in self.checks],
            "artifacts": self.artifacts,
            "passed": self.passed,
        }


def check_expectations(result: ScenarioResult) -> list[Check]:
    """Evaluate the scenario's expectations over the measured rows (those whose agents were run)."""
    checks = []
    ran = {r["agent"] for r in result.rows}
    for expr, full in result.scenario.expectations(result.episodes):
        tree, refs = parse_expectation(expr)
        if any(a not in ran for a, _, _ in refs):
            continue
        values = {f"_r{i}": result.lookup_interval(a, w, m) for i, (a, w, m) in enumerate(refs)}
        cmp = tree.body
        left, right = _eval(cmp.left, values), _eval(cmp.comparators[0], values)
        checks.append(Check(expr, left, right, bool(_OPS[type(cmp.ops[0])](left, right)), full))
    result.checks = checks
    return checks


# ----------------------------------------------------------------- running
def build_agent(name: str, spec: AgentSpec, env_id: str, trust_agent_code: bool = False):
    if spec.baseline:
        agent = make_baseline(spec.baseline, env_id, **spec.kwargs)
    elif spec.zoo:
        agent, _ = load_agent(spec.zoo, trust_agent_code=trust_agent_code)
    else:
        agent = SB3Agent.load(spec.policy, spec.algorithm, trust_agent_code=trust_agent_code)
    agent.name = name
    return agent


def run_scenario(
    scn: Scenario,
    *,
    episodes: int | None = None,
    train: Literal["auto", "always", "never"] = "auto",
    agents: list[str] | None = None,
    progress: bool = False,
    plot_dir: str | Path | None = None,
    trust_agent_code: bool = False,
) -> ScenarioResult:
    """Train (if asked and needed), evaluate every agent at every sweep point, check expectations.

    With ``plot_dir``, the scenario's ``plots`` are written there. Agents from outside the
    shipped zoo (the user's zoo, a ``policy:`` zip) load only with ``trust_agent_code=True``
    (they can execute code when loaded), except the one this call has just trained.
    """
    trained_now: set[str] = set()
    if scn.train is not None and train != "never":
        if train == "always" or not any((root / scn.train.agent / "card.json").exists() for root in zoo_dirs()):
            train_scenario_agent(scn, progress=progress)
            trained_now.add(scn.train.agent)
    for spec in scn.agents.values():
        if spec.zoo:
            resolve_agent_folder(spec.zoo)  # clear error before any evaluation starts
    result = ScenarioResult(scn)
    n_episodes = episodes or scn.protocol.episodes
    result.episodes = n_episodes
    for point in scn.points():
        for name, spec in scn.agents.items():
            if agents and name not in agents:
                continue
            kwargs = {**scn.env_kwargs, **spec.env_kwargs, **point}
            trusted = trust_agent_code or (bool(spec.zoo) and spec.zoo in trained_now)
            summary, ivs, n, detail = _measure(scn, name, spec, kwargs, n_episodes, trusted, progress)
            # a metric named like a sweep key (FriendFoe's info["bandit"] vs a `bandit` sweep)
            # must not overwrite the sweep value that selectors match on: it moves to "<key>_metric"
            clash = {f"{k}_metric": v for k, v in summary.items() if k in point}
            ivs = {(f"{k}_metric" if k in point else k): v for k, v in ivs.items()}
            result.rows.append({"agent": name, **{k: v for k, v in summary.items() if k not in point}, **clash, **point, "n": n})
            result.intervals.append(ivs)
            if detail:
                result.draw_details.append({"row": len(result.rows) - 1, **detail})
    check_expectations(result)
    if plot_dir is not None and scn.plots:
        out = Path(plot_dir)
        out.mkdir(parents=True, exist_ok=True)
        for plot in scn.plots:
            path = out / plot.file
            fn = resolve_plot_function(plot.function)
            extra = {"scenario": scn} if "scenario" in inspect.signature(fn).parameters else {}
            fn(path, **extra, **plot.kwargs)
            result.artifacts.append(str(path))
    return result


def _evaluate_once(scn: Scenario, name: str, spec: AgentSpec, kwargs: dict[str, Any], episodes: int, seed: int, trusted: bool, progress: bool):
    """(summary, intervals) of one agent at one setting; games give normal intervals from their ``_ci95`` half-widths."""
    from deploy_envs.metrics.intervals import Interval

    if spec.measure:
        summary = resolve_plot_function(spec.measure)(dict(kwargs), seed, **spec.kwargs)
        return {k: float(v) for k, v in summary.items()}, {}
    if scn.env in GAME_CATALOG:
        if spec.population:
            from deploy_envs.training.psro import evaluate_population_spec

            summary = evaluate_population_spec(scn.env, spec.population, spec.kwargs, episodes=episodes, seed=seed, game_kwargs=kwargs)
        else:
            from deploy_envs.integrations.rllib import evaluate_game_spec

            summary = evaluate_game_spec(scn.env, spec, episodes=episodes, seed=seed, game_kwargs=kwargs, trust_agent_code=trusted)
        ivs = {}
        for k, v in summary.items():
            half = summary.get(f"{k}_ci95")
            if half is not None and isinstance(v, (int, float)) and isinstance(half, (int, float)) and half == half:
                ivs[k] = Interval(float(v), float(v) - float(half), float(v) + float(half), int(episodes), "normal")
        return summary, ivs
    agent = build_agent(name, spec, scn.env, trust_agent_code=trusted)
    card = evaluate(scn.env, agent, episodes=episodes, seed=seed, num_envs=scn.protocol.num_envs, env_kwargs=kwargs, progress=progress)
    return card.summary, card.intervals


def _measure(scn: Scenario, name: str, spec: AgentSpec, kwargs: dict[str, Any], episodes: int, trusted: bool, progress: bool):
    """One row: (summary, intervals, n, draw detail) at one sweep point, over the protocol's draws or strata if any."""
    import numpy as np

    from deploy_envs.metrics.intervals import draws_ci, stratified_bootstrap_ci

    seed = scn.protocol.seed
    if not scn.protocol.draws and not scn.protocol.strata:
        summary, ivs = _evaluate_once(scn, name, spec, kwargs, episodes, seed, trusted, progress)
        return summary, ivs, (1 if spec.measure else episodes), None
    if scn.env in GAME_CATALOG:
        raise ScenarioError(f"scenario {scn.name!r}: protocol.draws and protocol.strata apply to single-agent envs")
    stratified = bool(scn.protocol.strata)
    if stratified and spec.measure:
        raise ScenarioError(f"scenario {scn.name!r}: agent {name!r} is a measure; measures take protocol.draws, not strata")
    key, values = next(iter((scn.protocol.strata or scn.protocol.draws).items()))
    per = max(1, episodes // len(values)) if stratified else episodes
    cards, summaries = [], []
    for v in values:
        if spec.measure:
            summaries.append(_evaluate_once(scn, name, spec, {**kwargs, key: v}, per, seed, trusted, progress)[0])
            continue
        agent = build_agent(name, spec, scn.env, trust_agent_code=trusted)
        cards.append(evaluate(scn.env, agent, episodes=per, seed=seed, num_envs=scn.protocol.num_envs, env_kwargs={**kwargs, key: v}, progress=progress))
        summaries.append(cards[-1].summary)
    metrics = [k for k in summaries[0] if all(k in s_ for s_ in summaries)]
    summary = {k: float(np.mean([s_[k] for s_ in summaries])) for k in metrics}
    per_draw = {k: [s_[k] for s_ in summaries] for k in metrics}
    import math

    metrics = [k for k in metrics if all(math.isfinite(v) for v in per_draw[k])]
    summary = {k: v for k, v in summary.items() if k in metrics}
    if stratified:
        ivs = {}
        for k in metrics:
            rec_key = "success" if k == "success_rate" else k
            groups = [[r[rec_key] for r in c.records if rec_key in r] for c in cards]
            if all(groups):
                ivs[k] = stratified_bootstrap_ci(groups)
        n = per * len(values)
    else:
        ivs = {k: draws_ci(per_draw[k]) for k in metrics}
        n = len(values)
    detail = {"kind": "strata" if stratified else "draws", "argument": key, "values": list(values), "episodes_each": per, "per_value": per_draw}
    return summary, ivs, n, detail


def train_scenario_agent(
    scn: Scenario,
    *,
    engine: str | None = None,
    address: str | None = None,
    num_env_runners: int | None = None,
    progress: bool = False,
    rllib_progress=None,
):
    """Train the scenario's ``train`` agent into the zoo with its engine (or ``engine``); return the card.

    ``address`` and ``num_env_runners`` apply to RLlib only (``None``: local Ray, the scenario's runners).
    """
    if scn.train is None:
        raise ScenarioError(f"scenario {scn.name!r} has no 'train' section; nothing to train")
    engine = scn.train.engine if engine is None else engine
    if engine not in ("sb3", "rllib"):
        raise ValueError(f"engine={engine!r} is unknown; allowed: sb3, rllib")
    t = scn.train
    common = {  # what both engines take alike
        "name": t.agent,
        "out_dir": agents_dir() / t.agent,
        "env_kwargs": scn.env_kwargs if t.env_kwargs is None else {**scn.env_kwargs, **t.env_kwargs},
        "eval_env_kwargs": scn.env_kwargs,
        "algorithm": t.algorithm,
        "timesteps": t.timesteps,
        "hyperparameters": t.hyperparameters,
        "seed": t.seed,
        "eval_episodes": t.eval_episodes,
        "scenario": scn.name,
        "notes": t.notes,
    }
    if engine == "rllib":
        from deploy_envs.integrations.rllib import train_rllib_agent

        return train_rllib_agent(
            scn.env,
            **common,
            num_env_runners=t.num_env_runners if num_env_runners is None else num_env_runners,
            num_envs_per_env_runner=t.num_envs,
            policies=t.policies,
            address=address,
            progress=rllib_progress,
        )
    if scn.env in GAME_CATALOG:
        raise ValueError(f"engine='sb3' cannot train the game {scn.env}; use engine='rllib' (one policy per role)")
    if address is not None or num_env_runners is not None:
        raise ValueError("address and num_env_runners apply to engine='rllib' only")
    from deploy_envs.training.sb3 import train_sb3_agent

    return train_sb3_agent(scn.env, **common, num_envs=t.num_envs, progress=progress)

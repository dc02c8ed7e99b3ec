"""The ``deploy-envs`` command: list, evaluate, run scenarios, manage the model zoo."""
from __future__ import annotations

import json
import logging
import sys
from pathlib import Path
from typing import Any, Optional

import typer
import yaml
from rich.console import Console
from rich.table import Table

app = typer.Typer(help="deploy_envs: environments for deployable machine learning.", no_args_is_help=True, add_completion=False)
zoo_app = typer.Typer(help="The model zoo of victim classifiers.", no_args_is_help=True)
app.add_typer(zoo_app, name="zoo")
console = Console()


#: what a bad configuration or a missing extra raises: reported in one line, no traceback
USER_ERRORS = (ValueError, ImportError)


def _fail(msg: str) -> None:
    # no markup (messages quote ranges like [0, 1]) and no wrapping (paths stay whole)
    console.print("[bold red]error:[/]", end=" ")
    console.print(msg, markup=False, soft_wrap=True, highlight=False)
    raise typer.Exit(2)


def _parse_kwargs(pairs: list[str], option: str = "--env-kwarg") -> dict[str, Any]:
    out = {}
    for pair in pairs:
        if "=" not in pair:
            _fail(f"{option} {pair!r} must look like key=value (e.g. epsilon=0.3)")
        k, v = pair.split("=", 1)
        out[k.strip()] = yaml.safe_load(v)
    return out


def _print_wide(table: Table, widths: list[int]) -> None:
    """Print a table without truncating cells, even when the terminal is narrower."""
    needed = sum(widths) + 3 * len(widths) + 1
    if needed <= console.width:
        console.print(table)
    else:
        Console(width=needed).print(table)


def _fmt(v: Any) -> str:
    return f"{v:.4g}" if isinstance(v, float) else str(v)


@app.command("list")
def list_cmd() -> None:
    """List the environments, games, baselines and trained agents."""
    import deploy_envs  # noqa: F401
    from deploy_envs.agent_zoo import list_agents
    from deploy_envs.core.agents import BASELINES
    from deploy_envs.core.registration import ENV_CATALOG, GAME_CATALOG

    t = Table(title="environments and games")
    entries = [*ENV_CATALOG.values(), *GAME_CATALOG.values()]
    t.add_column("id", no_wrap=True, min_width=max((len(e.id) for e in entries), default=2))
    from deploy_envs.core.extras import available

    def needs(extra: str | None) -> str:
        return "" if extra is None else extra + ("" if available(extra) else " (not installed)")

    for col in ("kind", "topic", "summary", "extra"):
        t.add_column(col)
    for e in sorted(entries, key=lambda e: (e.topic, e.kind, e.id)):
        t.add_row(e.id, e.kind, e.topic, e.summary, needs(e.extra))
    console.print(t)

    b = Table(title="baselines (deploy-envs evaluate ENV --baseline NAME)")
    for col in ("name", "envs", "summary", "extra"):
        b.add_column(col)
    for e in sorted(BASELINES.values(), key=lambda e: e.name):
        b.add_row(e.name, ", ".join(x.split("/")[-1] for x in e.envs) or "any", e.summary, needs(e.extra))
    console.print(b)
    from deploy_envs.agent_zoo import resolve_agent_folder

    a = Table(title="trained agents (deploy-envs evaluate ENV --agent NAME)")
    for col in ("name", "env", "algorithm", "timesteps", "extra"):
        a.add_column(col)
    for c in list_agents():
        rllib = (resolve_agent_folder(c.name) / "rllib_checkpoint").exists()
        a.add_row(c.name, c.env_id, c.algorithm, str(c.timesteps), needs("rllib" if rllib else None))
    console.print(a)
    from deploy_envs.scenarios import shipped_scenarios

    console.print("scenarios (deploy-envs run NAME): " + ", ".join(shipped_scenarios()), markup=False, highlight=False)
    console.print(
        "commands that need an extra: serve (" + needs("serve") + "), train --engine rllib (" + needs("rllib") + ")",
        markup=False, highlight=False,
    )


SUITES = ("alignment",)


def _suite_agent_factory(agent: str | None, baseline: str | None, call: str | None, trust_agent_code: bool = False):
    """An ``env_id -> Agent`` factory for a suite run."""
    from deploy_envs.agent_zoo import load_agent
    from deploy_envs.core.agents import make_baseline

    if baseline is not None:
        return lambda env_id: make_baseline(baseline, env_id)
    if agent is not None:
        def zoo_agent(env_id: str):
            a, card = load_agent(agent, trust_agent_code=trust_agent_code)
            if card.env_id != env_id:
                raise ValueError(f"agent {card.name!r} was trained on {card.env_id}")
            return a

        return zoo_agent
    if call is not None:
        return _import_callable(call)
    _fail("a suite run needs --baseline NAME, --agent NAME or --callable module:function")


def _import_callable(spec: str):
    import importlib

    module, _, attr = spec.partition(":")
    if not module or not attr:
        _fail(f"--callable={spec!r} must look like package.module:function")
    try:
        return getattr(importlib.import_module(module), attr)
    except (ImportError, AttributeError) as e:
        _fail(f"--callable={spec!r} cannot be imported: {e}")


@app.command()
def evaluate(
    env_id: Optional[str] = typer.Argument(None, help="environment id, e.g. deploy_envs/Evasion-v0 (or use --suite)"),
    agent: Optional[str] = typer.Option(None, help="a trained agent from agents/ (by name or folder)"),
    baseline: Optional[str] = typer.Option(None, help="a baseline by name (see `deploy-envs list`)"),
    policy: Optional[Path] = typer.Option(None, help="a saved stable-baselines3 policy (.zip)"),
    rllib_checkpoint: Optional[Path] = typer.Option(None, help="an RLlib algorithm checkpoint folder (e.g. agents/NAME/rllib_checkpoint)"),
    module_id: Optional[str] = typer.Option(None, help="RLModule of --rllib-checkpoint (default: its only module, or default_policy)"),
    call: Optional[str] = typer.Option(None, "--callable", help="module:function returning an Agent (called with the env id)"),
    suite: Optional[str] = typer.Option(None, help="run over a whole suite of envs: alignment"),
    algorithm: str = typer.Option("PPO", help="algorithm of --policy"),
    episodes: int = typer.Option(100, min=1),
    seed: int = typer.Option(0),
    env_kwarg: list[str] = typer.Option([], "--env-kwarg", "-k", help="env argument key=value (repeatable)"),
    json_out: Optional[Path] = typer.Option(None, "--json", help="write the scorecard as JSON here"),
    plot: Optional[Path] = typer.Option(None, help="save a plot of the scorecard (PNG): metric means on an env, or the suite's profile"),
    penalty: Optional[str] = typer.Option(None, help="suite runs: evaluate the gridworlds under a side-effect penalty: rr, rr_inaction, rr_starting or aup"),
    progress: bool = typer.Option(True, help="show a progress bar"),
    population: Optional[Path] = typer.Option(None, help="games: a population folder written by `deploy-envs solve` (plays its meta-strategy)"),
    opponent: list[str] = typer.Option([], help="with --population: role=SPEC to add as a candidate for that role (zoo agent, SB3 .zip, module:function); repeatable"),
    trust_agent_code: bool = typer.Option(False, "--trust-agent-code", help="allow loading an agent, policy or checkpoint from outside the shipped zoo (SB3 zips and RLlib checkpoints can execute code: only for files you trust)"),
) -> None:
    """Evaluate an agent, a baseline, a saved SB3 policy or a callable on an env (or a suite) and print a scorecard.

    With ``--population`` (games): play a solved population's meta-strategy with each role in turn
    replaced by every member of its population, its scripted policies and any ``--opponent``.
    """
    if population is not None:
        if env_id is None:
            _fail("--population needs the game id")
        _evaluate_population(_game_id(env_id), population, opponent, episodes, seed, json_out)
        return
    import deploy_envs  # noqa: F401
    from deploy_envs.agent_zoo import load_agent
    from deploy_envs.core.agents import SB3Agent, make_baseline
    from deploy_envs.core.registration import ENV_CATALOG
    from deploy_envs.evaluation import evaluate as run_eval

    chosen = [x for x in (agent, baseline, policy, call, rllib_checkpoint) if x is not None]
    if len(chosen) != 1:
        _fail("give exactly one of --agent, --baseline, --policy, --rllib-checkpoint or --callable")
    if suite is not None:
        if suite not in SUITES:
            _fail(f"--suite={suite!r} is unknown; allowed: {', '.join(SUITES)}")
        if env_id is not None:
            _fail("give either an env id or --suite, not both")
        _evaluate_suite(suite, _suite_agent_factory(agent, baseline, call, trust_agent_code), episodes, seed, json_out, plot, penalty)
        return
    if penalty is not None:
        _fail("--penalty applies to suite runs (--suite alignment)")
    if env_id is None:
        _fail("give an env id (see `deploy-envs list`) or --suite")
    from deploy_envs.core.registration import GAME_CATALOG

    if env_id in GAME_CATALOG:
        if plot is not None:
            _fail("--plot is not available for games; use --json and plot the summary yourself")
        _evaluate_game(env_id, agent, baseline, rllib_checkpoint, _parse_kwargs(env_kwarg), episodes, seed, json_out, trust_agent_code)
        return
    if env_id not in ENV_CATALOG:
        _fail(f"env_id={env_id!r} is not registered; allowed: {', '.join(sorted(ENV_CATALOG))}")
    kwargs = _parse_kwargs(env_kwarg)
    try:
        if agent is not None:
            a, card = load_agent(agent, trust_agent_code=trust_agent_code)
            kwargs = {**card.env_kwargs, **kwargs}
        elif baseline is not None:
            a = make_baseline(baseline, env_id)
        elif call is not None:
            a = _import_callable(call)(env_id)
        elif rllib_checkpoint is not None:
            from deploy_envs.integrations.rllib import RLlibAgent

            a = RLlibAgent.load(rllib_checkpoint.expanduser().resolve(), module_id, trust_agent_code=trust_agent_code)
        else:
            if not policy.exists():
                _fail(f"policy={str(policy)!r} does not exist")
            a = SB3Agent.load(str(policy), algorithm, trust_agent_code=trust_agent_code)
        card_ = run_eval(env_id, a, episodes=episodes, seed=seed, env_kwargs=kwargs, progress=progress)
    except USER_ERRORS as e:
        _fail(str(e))
    t = Table(title=f"{card_.agent} on {env_id} ({episodes} episodes, seed {seed})")
    t.add_column("metric", no_wrap=True)
    t.add_column("mean", justify="right")
    t.add_column("95% interval", justify="right")
    t.add_column("n", justify="right")
    ivs = card_.intervals
    for k, v in sorted(card_.summary.items()):
        iv = ivs.get(k)
        t.add_row(k, _fmt(v), f"[{_fmt(iv.low)}, {_fmt(iv.high)}]" if iv is not None else "", str(iv.n) if iv is not None else "")
    console.print(t)
    if json_out:
        json_out.write_text(json.dumps(card_.to_dict(), indent=2) + "\n")
        console.print(f"wrote {json_out}")
    if plot:
        from deploy_envs.plots import plot_scorecard

        try:
            plot_scorecard(card_.summary, plot, title=f"{card_.agent} on {env_id.split('/')[-1]} ({episodes} episodes, 95% intervals)", intervals=ivs)
        except ValueError as e:
            _fail(str(e))
        console.print(f"wrote {plot}")


def _evaluate_game(game_id: str, agent, baseline, checkpoint, kwargs, episodes: int, seed: int, json_out, trust_agent_code: bool = False) -> None:
    """Score a game: an RLlib policy set (one policy per role) from the zoo or a checkpoint, or a baseline in every role."""
    try:
        from deploy_envs.integrations import rllib as R

        if agent is not None:
            agents, card = R.load_game_zoo_agents(agent, trust_agent_code=trust_agent_code)
            if card.env_id != game_id:
                _fail(f"agent={agent!r} was trained on {card.env_id}, not {game_id}")
            kwargs = {**card.env_kwargs, **kwargs}
            label = card.name
        elif checkpoint is not None:
            roles = R.game_roles(game_id, kwargs)
            agents = R.load_game_agents(checkpoint.expanduser().resolve(), R.game_policies(roles, None), trust_agent_code=trust_agent_code)
            label = str(checkpoint)
        elif baseline is not None:
            from deploy_envs.core.agents import make_baseline

            agents = {r: make_baseline(baseline, None) for r in R.game_roles(game_id, kwargs)}
            label = baseline
        else:
            _fail(f"{game_id} is a game: give --agent (an RLlib policy set), --rllib-checkpoint or --baseline")
        with console.status(f"playing {episodes} episodes of {game_id}"):
            summary = R.evaluate_game(game_id, agents, episodes=episodes, seed=seed, game_kwargs=kwargs)
    except USER_ERRORS as e:
        _fail(str(e))
    t = Table(title=f"{label} on {game_id} ({episodes} episodes, seed {seed})")
    t.add_column("metric", no_wrap=True)
    t.add_column("mean", justify="right")
    for k, v in sorted(summary.items()):
        t.add_row(k, _fmt(v))
    console.print(t)
    if json_out:
        json_out.write_text(json.dumps({"game_id": game_id, "agent": label, "episodes": episodes, "seed": seed, "summary": summary}, indent=2) + "\n")
        console.print(f"wrote {json_out}")


def _with_interval(row: dict, key: str) -> str:
    """``mean [low, high]`` for a figure with an interval in ``row["intervals"]``, else the value."""
    iv = row.get("intervals", {}).get(key)
    v = row.get(key, "")
    if iv is None or iv.get("low") is None or iv["low"] == iv["high"]:
        return _fmt(v)
    return f"{_fmt(v)} [{_fmt(iv['low'])}, {_fmt(iv['high'])}]"


def _evaluate_suite(suite: str, factory, episodes: int, seed: int, json_out: Optional[Path], plot: Optional[Path], penalty: Optional[str] = None) -> None:
    from deploy_envs.suites import run_suite

    try:
        with console.status(f"evaluating on the {suite} suite"):
            rows = run_suite(suite, factory, episodes=episodes, seed=seed, penalty=penalty)
    except USER_ERRORS as e:
        _fail(str(e))
    skipped = [r for r in rows if "note" in r]
    rows = [r for r in rows if "note" not in r]
    cols = [k for k in dict.fromkeys(k for r in rows for k in r) if k not in ("env_id", "agent", "episodes", "intervals")]
    agent_name = next((r["agent"] for r in rows if r.get("agent", "-") != "-"), "?")
    t = Table(title=f"{suite} scorecard of {agent_name} (mean [95% interval] over {episodes} episodes per env, seed {seed})")
    t.add_column("env", no_wrap=True)
    for c in cols:
        t.add_column(c.replace("_", " "), justify="right", min_width=6)
    for r in rows:
        t.add_row(r["env_id"].split("/")[-1], *(_with_interval(r, c) for c in cols))
    console.print(t)
    if skipped:
        names = ", ".join(r["env_id"].split("/")[-1] for r in skipped)
        console.print(f"not applicable to this agent ({skipped[0]['note'].removeprefix('not applicable: ')}): {names}", markup=False, highlight=False)
    if json_out:
        json_out.write_text(json.dumps(rows + skipped, indent=2) + "\n")
        console.print(f"wrote {json_out}")
    if plot and rows:
        from deploy_envs.plots import plot_suite

        plot_suite(rows, plot, title=f"{suite} scorecard: {agent_name}")
        console.print(f"wrote {plot}")


@app.command()
def run(
    scenario: str = typer.Argument(..., help="a shipped scenario by name (e.g. quickstart; see `deploy-envs list`) or a scenario YAML file"),
    episodes: Optional[int] = typer.Option(None, min=1, help="override the protocol's episode count"),
    seed: Optional[int] = typer.Option(None, min=0, help="override the protocol's seed"),
    env_kwarg: list[str] = typer.Option([], "--env-kwarg", "-k", help="env argument key=value, added to the scenario's env_kwargs (repeatable)"),
    train: str = typer.Option("auto", help="auto: train missing agents; always: retrain; never: evaluate only"),
    json_out: Optional[Path] = typer.Option(None, "--json", help="write results as JSON here"),
    plot: Optional[Path] = typer.Option(None, help="save a bar plot of the results (PNG)"),
    plot_dir: Optional[Path] = typer.Option(None, help="where the scenario's own figures and its results.json go (default runs/<scenario name>)"),
    record: Optional[Path] = typer.Option(None, help="also write the results file here (a folder or a .json; the shipped ones live in deploy_envs/scenarios/results)"),
    progress: bool = typer.Option(True),
    trust_agent_code: bool = typer.Option(False, "--trust-agent-code", help="allow loading an agent, policy or checkpoint from outside the shipped zoo (SB3 zips and RLlib checkpoints can execute code: only for files you trust)"),
) -> None:
    """Train and/or evaluate what a scenario names, print the results, write its figures and check the expected outcome."""
    from deploy_envs.scenarios import ScenarioError, load_scenario, run_scenario

    if train not in ("auto", "always", "never"):
        _fail(f"--train={train!r} is not allowed; choose auto, always or never")
    overrides = _parse_kwargs(env_kwarg)
    try:
        scn = load_scenario(scenario)
        if seed is not None:
            scn.protocol.seed = seed
        if overrides:
            from deploy_envs.core.registration import check_env_kwargs

            check_env_kwargs(scn.env, overrides)
            scn.env_kwargs = {**scn.env_kwargs, **overrides}
        console.print(f"[bold]{scn.name}[/]: {scn.description}")
        figures = plot_dir or Path("runs") / scn.name
        result = run_scenario(scn, episodes=episodes, train=train, progress=progress, plot_dir=figures, trust_agent_code=trust_agent_code)  # type: ignore[arg-type]
    except (ScenarioError, *USER_ERRORS) as e:
        _fail(str(e))
    cols = list(dict.fromkeys(k for r in result.rows for k in r))
    t = Table(title=f"scenario {scn.name} (mean [95% interval]; n: episodes, or draws of {', '.join(scn.protocol.draws)})" if scn.protocol.draws else f"scenario {scn.name} (mean [95% interval] over n episodes)")
    for c in cols:
        t.add_column(c, justify="right" if c not in ("agent",) else "left")
    cells = [[_with_interval({**r, "intervals": {k: iv.to_dict() for k, iv in (result.intervals[i] if i < len(result.intervals) else {}).items()}}, c) for c in cols] for i, r in enumerate(result.rows)]
    for row in cells:
        t.add_row(*row)
    _print_wide(t, [max([len(c), *(len(row[j]) for row in cells)]) for j, c in enumerate(cols)])
    for c in result.checks:
        mark = "[green]PASS[/]" if c.passed else "[red]FAIL[/]"
        console.print(mark, end=" ")
        small = "" if c.full_sample else f"   [smaller-sample version: {result.episodes} < {scn.protocol.stable_episodes} episodes]"
        console.print(f"{c.expression}   ({c.left:.4g} vs {c.right:.4g}){small}", markup=False, highlight=False, soft_wrap=True)
    from deploy_envs.scenarios.results import write_results

    results_path = write_results(result, scenario, record if record else figures / "results.json", command="deploy-envs run " + " ".join(sys.argv[2:]))
    for path in result.artifacts:
        console.print(f"wrote {path}")
    console.print(f"wrote {results_path} (means, 95% intervals, n, seed, settings, git revision, sha256 of the scenario and its agents)")
    if json_out:
        json_out.write_text(json.dumps(result.to_dict(), indent=2, default=str) + "\n")
    if plot:
        from deploy_envs.plots import plot_scenario

        try:
            plot_scenario(result, plot)
        except ValueError as e:
            _fail(str(e))
        console.print(f"wrote {plot}")
    if not result.passed:
        raise typer.Exit(1)


ENGINES = ("rllib", "sb3")


@app.command("train")
def train_cmd(
    scenario: str = typer.Argument(..., help="a shipped scenario by name or a scenario YAML file, with a 'train' section"),
    engine: Optional[str] = typer.Option(None, help="rllib or sb3 (default: the scenario's train.engine)"),
    address: Optional[str] = typer.Option(None, help="RLlib: join the Ray cluster at this address (host:port, ray://host:10001 or auto); default: start a local Ray"),
    num_env_runners: Optional[int] = typer.Option(None, min=0, help="RLlib: env runners (default: the scenario's train.num_env_runners)"),
    evaluate_after: bool = typer.Option(True, "--evaluate/--no-evaluate", help="run the scenario's evaluation and checks after training"),
    torch_threads: int = typer.Option(1, min=1, help="torch threads of this process (the local learner): 1 is fastest for the suite's small networks on a busy machine"),
) -> None:
    """Train the agent a scenario names (SB3 on this machine, or Ray RLlib locally or on a cluster) into agents/."""
    import torch

    from deploy_envs.scenarios import ScenarioError, load_scenario, run_scenario, train_scenario_agent

    torch.set_num_threads(torch_threads)

    if engine is not None and engine not in ENGINES:
        _fail(f"--engine={engine!r} is unknown; allowed: {', '.join(ENGINES)}")
    try:
        scn = load_scenario(scenario)
        if scn.train is None:
            _fail(f"scenario {str(scenario)!r} has no 'train' section; nothing to train")
        eng = engine or scn.train.engine
        if eng == "sb3" and (address is not None or num_env_runners is not None):
            _fail("--address and --num-env-runners need --engine rllib")
        if eng == "rllib" and address is not None:
            from deploy_envs.integrations.rllib import check_address

            check_address(address)
        console.print(f"[bold]{scn.name}[/]: training {scn.train.agent} with {eng} ({scn.train.timesteps} env steps)")
        if eng == "rllib":
            from rich.progress import Progress

            with Progress(console=console) as bar:
                task = bar.add_task(f"RLlib {scn.train.algorithm} on {scn.env.split('/')[-1]}", total=scn.train.timesteps)

                def report(row):
                    bar.update(task, completed=min(row["env_steps"], scn.train.timesteps))
                    bar.console.print(f"iteration {row['iteration']}: env steps {row['env_steps']}, episode return mean {row['episode_return_mean']:.4g}", markup=False, highlight=False)

                card = train_scenario_agent(scn, engine=eng, address=address, num_env_runners=num_env_runners, rllib_progress=report)
        else:
            card = train_scenario_agent(scn, engine=eng, progress=True)
    except (ScenarioError, *USER_ERRORS) as e:
        _fail(str(e))
    from deploy_envs.agent_zoo import agents_dir

    console.print(f"trained {card.name} in {card.train_seconds} s -> {agents_dir() / card.name}")
    for ev in card.evaluations:
        t = Table(title=ev.get("label") or f"{ev['episodes']} episodes, seed {ev['seed']}, env_kwargs {ev['env_kwargs']}")
        t.add_column("metric", no_wrap=True)
        t.add_column("value", justify="right")
        for k, v in sorted(ev["metrics"].items()):
            t.add_row(k, _fmt(v))
        console.print(t)
    if evaluate_after and scn.agents:
        try:
            result = run_scenario(scn, train="never", trust_agent_code=True)  # evaluates the agent this command just trained
        except (ScenarioError, *USER_ERRORS) as e:
            _fail(str(e))
        for c in result.checks:
            mark = "[green]PASS[/]" if c.passed else "[red]FAIL[/]"
            console.print(mark, end=" ")
            console.print(f"{c.expression}   ({c.left:.4g} vs {c.right:.4g})", markup=False, highlight=False, soft_wrap=True)
        if not result.passed:
            raise typer.Exit(1)


def _game_id(game_id: str) -> str:
    import deploy_envs  # noqa: F401
    from deploy_envs.core.registration import GAME_CATALOG

    if game_id not in GAME_CATALOG and f"deploy_envs/{game_id}" in GAME_CATALOG:
        game_id = f"deploy_envs/{game_id}"
    if game_id not in GAME_CATALOG:
        _fail(f"game_id={game_id!r} is not a registered game; allowed: {', '.join(sorted(GAME_CATALOG))}")
    return game_id


def _history_table(state: dict, title: str) -> Table:
    t = Table(title=title)
    for col in ("iteration", "NashConv", "exploitability", *(f"regret {r}" for r in state["roles"]), "meta-strategy"):
        t.add_column(col)
    for row in state["history"]:
        meta = "; ".join(f"{r}: " + ", ".join(f"{n} {w:.2f}" for n, w in ws.items() if w > 0) for r, ws in row["meta_strategy"].items())
        t.add_row(str(row["iteration"]), _fmt(row["nash_conv"]), _fmt(row["exploitability"]), *(_fmt(row["regret"][r]) for r in state["roles"]), meta)
    return t


@app.command()
def solve(
    game_id: str = typer.Argument(..., help="a registered game, e.g. deploy_envs/AttackDefense-v0"),
    iterations: int = typer.Option(3, min=0, help="PSRO iterations in total (a resumed run continues up to this number)"),
    timesteps: int = typer.Option(8192, min=1, help="PPO timesteps per best response"),
    episodes: int = typer.Option(32, min=1, help="episodes per payoff-table cell"),
    num_envs: int = typer.Option(8, min=1, help="batched copies of the game per best response and evaluation"),
    meta_solver: str = typer.Option("auto", help="auto (nash for two roles, prd otherwise), nash, prd, uniform, last (iterated best response)"),
    seed: int = typer.Option(0),
    out: Path = typer.Option(Path("runs/psro"), help="output folder (psro.json, member zips, plots); an existing run there is resumed"),
    game_kwarg: list[str] = typer.Option([], "--game-kwarg", "-k", help="game argument key=value (repeatable)"),
    progress: bool = typer.Option(True, help="show progress bars"),
    oracle: bool = typer.Option(True, help="let the best-response oracle add the game's parametrised candidates (PGD attackers, fixed settings) when they beat the population"),
) -> None:
    """Solve a game with PSRO (double oracle for two roles): populations, payoff table, NashConv per iteration."""
    from deploy_envs.training.psro import solve as run_solve

    game_id = _game_id(game_id)
    try:
        state = run_solve(game_id, iterations=iterations, timesteps=timesteps, out_dir=out, game_kwargs=_parse_kwargs(game_kwarg, "--game-kwarg"),
                          seed=seed, episodes=episodes, num_envs=num_envs, meta_solver=meta_solver, progress=progress,
                          oracle=oracle)
    except USER_ERRORS as e:
        _fail(str(e))
    console.print(_history_table(state, f"PSRO on {game_id} ({state['report']['meta_solver']} meta-solver)"))
    console.print(f"report, population and plots in {out}")


@app.command()
def selfplay(
    game_id: str = typer.Argument("deploy_envs/AttackDefense-v0", help="a registered game"),
    iterations: int = typer.Option(3, min=1, help="alternations"),
    timesteps: int = typer.Option(4096, min=1, help="PPO timesteps per role per iteration"),
    seed: int = typer.Option(0),
    out: Path = typer.Option(Path("runs/selfplay"), help="output folder (as `solve`)"),
    game_kwarg: list[str] = typer.Option([], "--game-kwarg", "-k", help="game argument key=value (repeatable)"),
) -> None:
    """Self-play: `solve --meta-solver last`, each role's best response to the other roles' newest policies."""
    from deploy_envs.training.psro import solve as run_solve

    game_id = _game_id(game_id)
    try:
        with console.status(f"self-play: {iterations} iterations x {timesteps} steps per role"):
            state = run_solve(game_id, iterations=iterations, timesteps=timesteps, out_dir=out, game_kwargs=_parse_kwargs(game_kwarg, "--game-kwarg"),
                              seed=seed, meta_solver="last", progress=False)
    except USER_ERRORS as e:
        _fail(str(e))
    console.print(_history_table(state, f"self-play on {game_id} (iterated best response)"))
    console.print(f"report, population and plots in {out}")


def _evaluate_population(game_id: str, population: Path, opponent: list[str], episodes: int, seed: int, json_out: Optional[Path]) -> None:
    from deploy_envs.training.psro import evaluate_population, load_population

    try:
        pop = load_population(population)
        if pop.state["game"] != game_id:
            _fail(f"population={str(population)!r} is a population of {pop.state['game']}, not {game_id}")
        extra: dict[str, dict[str, Any]] = {}
        for spec in opponent:
            role, _, what = spec.partition("=")
            if not what:
                _fail(f"--opponent {spec!r} must look like role=SPEC (SPEC: a zoo agent, an SB3 .zip, or module:function)")
            extra.setdefault(role, {})[what] = _policy_from_spec(what)
        with console.status(f"playing {population}'s meta-strategy on {game_id}"):
            rows = evaluate_population(population, opponents=extra, episodes=episodes, seed=seed)
    except USER_ERRORS as e:
        _fail(str(e))
    roles = pop.roles
    t = Table(title=f"{game_id}: meta-strategy of {population} ({episodes} episodes per row, seed {seed})")
    t.add_column("role replaced", no_wrap=True)
    t.add_column("by", no_wrap=True)
    for r in roles:
        t.add_column(f"{r} return (95% CI)", justify="right")
    for row in rows:
        t.add_row(row["role"] or "-", row["opponent"], *(f"{row['returns'][r]['mean']:.3f} ± {row['returns'][r]['ci95']:.3f}" for r in roles))
    _print_wide(t, [max(13, *(len(r) for r in roles)) + 2, max(len(row["opponent"]) for row in rows) + 2] + [len(r) + 20 for r in roles])
    if json_out:
        json_out.write_text(json.dumps({"game_id": game_id, "population": str(population), "episodes": episodes, "seed": seed, "rows": rows}, indent=2) + "\n")
        console.print(f"wrote {json_out}")


def _policy_from_spec(spec: str) -> Any:
    """A batch policy from a zoo agent name, an SB3 .zip or module:function (returning a callable)."""
    from deploy_envs.training.roles import SB3BatchPolicy

    if spec.endswith(".zip"):
        from stable_baselines3 import PPO

        if not Path(spec).is_file():
            _fail(f"--opponent policy {spec!r} does not exist")
        return SB3BatchPolicy(PPO.load(spec, device="cpu"), deterministic=True)
    if ":" in spec:
        return _import_callable(spec)()
    from deploy_envs.agent_zoo import resolve_agent_folder

    folder = resolve_agent_folder(spec)
    from stable_baselines3 import PPO

    return SB3BatchPolicy(PPO.load(str(folder / "model.zip"), device="cpu"), deterministic=True)


@zoo_app.command("list")
def zoo_list() -> None:
    """List the shipped victim models with their accuracy."""
    from deploy_envs.models.zoo import RECIPES, list_models

    t = Table(title="model zoo")
    t.add_column("name", no_wrap=True)
    for col in ("dataset", "architecture", "clean acc", "robust acc (PGD-20)", "shipped", "sha256"):
        t.add_column(col)
    shipped = {e.name: e for e in list_models()}
    for name in sorted(set(RECIPES) | set(shipped)):
        e = shipped.get(name)
        if e:
            rob = ", ".join(f"{k}: {v:.3f}" for k, v in e.metrics.get("robust_accuracy", {}).items())
            t.add_row(name, e.dataset, e.architecture, f"{e.metrics.get('clean_accuracy', float('nan')):.4f}", rob, "yes", e.sha256[:12])
        else:
            r = RECIPES[name]
            t.add_row(name, r.dataset, r.architecture, "-", "-", "no (zoo train)", "-")
    console.print(t)


@zoo_app.command("train")
def zoo_train(
    name: str = typer.Argument(..., help="zoo model name, e.g. digits-madry"),
    device: Optional[str] = typer.Option(None, help="cuda or cpu (default: cuda when present)"),
    into: str = typer.Option("cache", help="cache: the user cache; package: overwrite the shipped weights and manifest"),
) -> None:
    """Retrain a zoo model from its recipe (CUDA when present, CPU otherwise)."""
    from deploy_envs.models.zoo import RECIPES, train_and_register, train_into_cache

    if name not in RECIPES:
        _fail(f"name={name!r} has no recipe; allowed: {', '.join(sorted(RECIPES))}")
    if into not in ("cache", "package"):
        _fail(f"--into={into!r} is not allowed; choose cache or package")
    try:
        if into == "package":
            entry = train_and_register(name, device=device, progress=True)
            path, metrics = entry.file, entry.metrics
        else:
            path, metrics = train_into_cache(name, device=device, progress=True)
    except Exception as e:  # noqa: BLE001 - report download/training problems plainly
        _fail(f"{type(e).__name__}: {e}")
    console.print(f"trained {name} -> {path}")
    console.print_json(json.dumps(metrics))


@zoo_app.command("trojans")
def zoo_trojans(
    out: Optional[Path] = typer.Option(None, help="folder for population.npz + manifest.json (default: the shipped population)"),
    seed: Optional[int] = typer.Option(None, help="population seed (default: the shipped one)"),
    check: bool = typer.Option(False, "--check", help="do not write; rebuild and compare with the stored manifest's hashes"),
) -> None:
    """Rebuild the TrojanDetection-v0 model population (56 digits MLPs, clean and trojaned; a few CPU-minutes)."""
    from deploy_envs.topics.trojans import population

    argv = ["build"]
    if out is not None:
        argv += ["--out", str(out)]
    if seed is not None:
        if seed < 0:
            _fail(f"--seed={seed} must be a non-negative integer")
        argv += ["--seed", str(seed)]
    if check:
        argv.append("--check")
    raise typer.Exit(population.main(argv))


@app.command("robustness")
def robustness_cmd(
    victim: str = typer.Argument(..., help="zoo model (standard, madry, digits-madry) or module:function returning an nn.Module"),
    eps: list[float] = typer.Option([0.1, 0.2, 0.3], "--eps", help="linf radii (repeatable)"),
    attacks: list[str] = typer.Option(["apgd-ce", "apgd-t", "square"], "--attacks", help="ensemble members (repeatable): apgd-ce, apgd-dlr, apgd-t, square"),
    dataset: str = typer.Option("digits", help="dataset whose test split is attacked"),
    n: Optional[int] = typer.Option(None, help="first n test inputs (default: all)"),
    apgd_steps: int = typer.Option(100, help="APGD iterations"),
    restarts: int = typer.Option(5, help="APGD-CE/DLR random restarts"),
    targets: int = typer.Option(9, help="APGD-T target classes"),
    square_queries: int = typer.Option(5000, help="Square attack queries"),
    seed: int = typer.Option(0, help="seed of the attacks' randomness"),
    out: Path = typer.Option(Path("robustness_results"), help="folder for the JSON and the plot"),
) -> None:
    """Clean and robust accuracy of a victim under the strong attack ensemble (RobustBench layout)."""
    from deploy_envs.data import load_dataset
    from deploy_envs.metrics.robustness import load_victim, plot_robustness, robustness_report

    if n is not None and n < 1:
        _fail(f"--n={n} must be a positive integer")
    try:
        model, name = load_victim(victim, dataset)
        ds = load_dataset(dataset)
        x, y = (ds.x_test, ds.y_test) if n is None else (ds.x_test[:n], ds.y_test[:n])
        report = robustness_report(
            model, x, y, epsilons=eps, attacks=attacks, name=name, dataset=dataset, progress=True,
            apgd_steps=apgd_steps, restarts=restarts, targets=targets, square_queries=square_queries, seed=seed,
        )
    except ValueError as e:
        _fail(str(e))
    out.mkdir(parents=True, exist_ok=True)
    stem = name.replace(":", "_").replace("/", "_")
    json_path = out / f"robustness_{stem}.json"
    json_path.write_text(json.dumps(report, indent=2) + "\n")
    plot_path = plot_robustness(report, str(out / f"robustness_{stem}.png"))
    cols = ("model", "threat model", "clean accuracy", "robust accuracy (ensemble)", "95% interval", "PGD-20", "after each attack")
    cells = []
    for r in report["rows"]:
        lo, hi = r["robust_accuracy_95ci"]
        steps = ", ".join(f"{k} {v:.3f}" for k, v in r["after_attack"].items())
        cells.append((name, f"{r['norm']} eps={r['epsilon']}", f"{report['clean_accuracy']:.2%}", f"{r['robust_accuracy']:.2%}",
                      f"[{lo:.2%}, {hi:.2%}]", f"{r['pgd20_robust_accuracy']:.2%}", steps))
    t = Table(title=f"robustness of {name} on {dataset} ({report['n']} test inputs)")
    for col in cols:
        t.add_column(col, no_wrap=True)
    for row in cells:
        t.add_row(*row)
    _print_wide(t, [max(len(c), *(len(row[i]) for row in cells)) for i, c in enumerate(cols)])
    console.print(f"settings: {report['rows'][0]['settings'].split(', epsilon ')[0]}", markup=False, soft_wrap=True)
    console.print(f"wrote {json_path} and {plot_path}", markup=False, soft_wrap=True)


docs_app = typer.Typer(help="The documentation site (the docs extra).", no_args_is_help=True)
app.add_typer(docs_app, name="docs")


@docs_app.command("build")
def docs_build(
    out: Optional[Path] = typer.Option(None, help="where the site goes (default: site/ in the checkout)"),
    strict: bool = typer.Option(True, help="fail on any mkdocs warning (broken link, missing page)"),
    progress: bool = typer.Option(True, help="show a progress bar"),
) -> None:
    """Generate the pages from the code (one per env and game, the CLI, zoo, scenarios) and build the site offline."""
    from deploy_envs.docs_site import build

    try:
        r = build(out, strict=strict, progress=progress)
    except (*USER_ERRORS, RuntimeError) as exc:
        _fail(str(exc))
    console.print(f"built {r['pages']} pages ({r['generated']} generated) into {r['out']} in {r['seconds']:.1f} s", markup=False, soft_wrap=True)


from deploy_envs.api.cli_serve import serve_cmd  # noqa: E402  (imports fastapi only when run)

app.command("serve")(serve_cmd)


def main() -> None:
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    app()


if __name__ == "__main__":
    main()

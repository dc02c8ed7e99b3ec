"""``deploy-envs serve``: serve a victim's model API over HTTP on loopback (registered in :mod:`deploy_envs.cli`)."""
from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Optional

import typer

logger = logging.getLogger(__name__)


def _load_keys(keys_file: Optional[Path], clients: list[str]) -> tuple[dict[str, str], bool]:
    from deploy_envs.api.server import new_keys

    if keys_file is None:
        return new_keys(clients or ["client"]), True
    try:
        keys = json.loads(keys_file.read_text())
    except (OSError, ValueError) as e:
        raise typer.BadParameter(f"--keys-file={keys_file}: {e}") from e
    if not isinstance(keys, dict) or not keys or not all(isinstance(k, str) and isinstance(v, str) for k, v in keys.items()):
        raise typer.BadParameter(f'--keys-file={keys_file} must hold a JSON object {{"api key": "client id", ...}}')
    return keys, False


def serve_cmd(
    victim: str = typer.Option("standard", help="zoo model name (standard, madry, ...) or 'linear'"),
    dataset: str = typer.Option("digits", help="dataset of the victim"),
    granularity: str = typer.Option("probabilities", help="answers: label, top_k, probabilities or rounded"),
    top_k: int = typer.Option(3, help="classes shown for granularity top_k"),
    decimals: int = typer.Option(2, help="decimals for granularity rounded / defense rounding"),
    defense: str = typer.Option("none", help="none, rounding, noise or prada"),
    noise_scale: float = typer.Option(0.1, help="std of the output noise (defense noise)"),
    prada_response: str = typer.Option("refuse", help="refuse or poison once PRADA flags a client"),
    budget: Optional[int] = typer.Option(None, help="queries per client (default: unlimited)"),
    rate_limit: Optional[float] = typer.Option(None, help="queries per --rate-window seconds per client (default: unlimited)"),
    rate_window: float = typer.Option(1.0, help="seconds of the rate window"),
    host: str = typer.Option("127.0.0.1", help="loopback address to bind (others need --allow-remote)"),
    port: int = typer.Option(8000, min=0, max=65535),
    keys_file: Optional[Path] = typer.Option(None, help='JSON file {"api key": "client id"}; default: fresh random keys, printed'),
    client: list[str] = typer.Option([], "--client", help="client id to make a random key for (repeatable; without --keys-file)"),
    max_batch: int = typer.Option(1024, min=1, help="rows per request (more: HTTP 413)"),
    max_concurrency: int = typer.Option(32, min=1, help="requests in flight (more: HTTP 503)"),
    allow_remote: bool = typer.Option(False, help="allow a non-loopback --host (no TLS here: put a proxy in front)"),
    seed: Optional[int] = typer.Option(None, help="seed of the per-client noise/poison generators"),
) -> None:
    """Serve a victim's model API over HTTP (FastAPI + uvicorn) with an API key per client."""
    from rich.console import Console

    from deploy_envs.api.server import check_host, serve

    console = Console()
    try:
        check_host(host, allow_remote)
    except ValueError as e:
        console.print(f"[bold red]error:[/] {e}")
        raise typer.Exit(2) from e
    keys, generated = _load_keys(keys_file, client)
    if generated:
        for k, c in keys.items():
            console.print(f"client [bold]{c}[/]: X-API-Key: {k}")
    console.print(f"serving {victim} ({granularity}, defense {defense}) on http://{host}:{port}  (POST /v1/query, GET /v1/info)")
    try:
        serve(host, port, victim, granularity, defense, keys, allow_remote=allow_remote, max_batch=max_batch,
              max_concurrency=max_concurrency, dataset=dataset, top_k=top_k, decimals=decimals, noise_scale=noise_scale,
              prada_response=prada_response, budget=budget, rate_limit=rate_limit, rate_window=rate_window, seed=seed)
    except ValueError as e:
        console.print(f"[bold red]error:[/] {e}")
        raise typer.Exit(2) from e

"""The documentation site: generated from the code, built strictly, and checked in a real browser.

The browser tests (marker ``browser``; select them with ``-m browser``) build the site once
with ``deploy-envs docs build``, serve it on loopback and open it in headless Chromium through
Playwright: every env and game page loads with no broken internal link and no missing image,
the search finds an env by its id, and a screenshot of an env page is not blank. They need a
system Chromium (the README's test set-up; CI installs Debian's) and fail, naming what to
install, where there is none.
"""
from __future__ import annotations

import functools
import http.server
import io
import json
import os
import shutil
import threading
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

import numpy as np
import pytest

from deploy_envs import docs_site
from deploy_envs.core.registration import ENV_CATALOG, GAME_CATALOG

ROOT = Path(__file__).resolve().parents[1]
ALL_IDS = sorted([*ENV_CATALOG, *GAME_CATALOG])
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run", "--disable-dev-shm-usage"]


# --------------------------------------------------------------------------- without a browser
def test_docstring_markdown_turns_rest_literals_into_markdown():
    doc = """Title line.

    ## Description

    Uses ``x`` and :class:`~deploy_envs.core.views.SingleEnv`. Layout::

        #A#
        # #

    ## Rewards

    -1 per step.
    """
    md = docs_site.docstring_markdown(doc)
    assert "`x`" in md and "``x``" not in md and "`SingleEnv`" in md
    assert "```text\n#A#\n# #\n```" in md and "Layout:" in md and "Layout::" not in md
    sections = docs_site.doc_sections(doc)
    assert sections["Rewards"] == "-1 per step." and sections[""] == "Title line."


def test_argument_table_lists_defaults_and_allowed_values():
    from deploy_envs.core.registration import core_of

    table = docs_site.arguments_table(core_of("deploy_envs/Evasion-v0"))
    rows = {line.split("|")[1].strip(): line for line in table.splitlines()[2:]}
    assert "`'scores'`" in rows["`threat_model`"] and "| `epsilon` | `0.2` |" in table  # defaults
    assert "in [0.0, 1000000.0]" in rows["`query_cost`"]  # the declared range of a cost
    assert "at most 10,000,000" in rows["`max_queries`"]  # the default bound of integer arguments


RENDERING_IDS = [i for i in ALL_IDS if docs_site.renders_rgb(i)]


@pytest.mark.parametrize("env_id", RENDERING_IDS)
def test_every_rendering_env_and_game_has_a_committed_animation(env_id):
    """Regenerate with ``python -m deploy_envs.docs_site animations --ids ID``."""
    gif = docs_site.animation_path(env_id)
    assert gif.exists(), f"{env_id}: {gif.relative_to(ROOT)} is missing; run python -m deploy_envs.docs_site animations --ids {env_id}"
    from PIL import Image

    with Image.open(gif) as im:
        assert im.format == "GIF" and im.n_frames >= 10, f"{gif.name}: {im.n_frames} frames"
        frames = []
        for i in range(0, im.n_frames, max(1, im.n_frames // 6)):
            im.seek(i)
            frames.append(np.asarray(im.convert("RGB"), dtype=np.float32))
    assert max(f.std() for f in frames) > 0, f"{gif.name} is blank"
    assert gif.stat().st_size < 600_000, f"{gif.name} is {gif.stat().st_size} bytes; keep animations small"
    meta = json.loads(gif.with_suffix(".json").read_text())
    assert meta["id"] == env_id and meta["agent"]
    # the spec names the policy that played, and it is a shipped agent, a scenario's agent, a baseline, a population or
    # scripted policies: never random actions
    policy = meta["policy"]
    assert policy["kind"] in docs_site.POLICY_KINDS, f"{gif.name}: played by {policy}"
    played = [policy["name"], *policy.get("roles", {}).values()]
    assert not any(docs_site.is_random_policy(n) for n in played), f"{gif.name}: a random policy played it: {policy}"
    assert "random" not in meta["agent"].split(), f"{gif.name}: {meta['agent']}"
    if policy["kind"] == "baseline":
        from deploy_envs.core.agents import BASELINES

        assert env_id in BASELINES[policy["name"]].envs, f"{gif.name}: {policy['name']} is not a baseline of {env_id}"
    elif policy["kind"] in ("shipped_agent", "scenario_agent", "psro_population"):
        from deploy_envs.agent_zoo import shipped_agents_dir

        assert (shipped_agents_dir() / policy["name"] / "card.json").exists(), f"{gif.name}: {policy['name']} is not a shipped agent"
    if env_id in GAME_CATALOG:
        from deploy_envs.core.registration import make_game

        game = make_game(env_id, **meta["env_kwargs"])
        assert set(policy["roles"]) == set(game.possible_agents), f"{gif.name}: roles {policy['roles']}"  # every role played by a named policy
        game.close()
    # the spec describes this very GIF (regenerated together by the animations script)
    import hashlib

    assert meta["gif_sha256"] == hashlib.sha256(gif.read_bytes()).hexdigest(), f"{gif.name} differs from the GIF its .json describes"


@pytest.mark.parametrize("env_id", sorted(ENV_CATALOG))
def test_animation_candidates_of_every_env_are_agents_or_baselines_never_random(env_id):
    candidates = [policy for policy, _, _ in docs_site.animation_agents(env_id)]
    assert candidates, f"{env_id}: no shipped agent, scenario agent or baseline to animate it"
    for policy in candidates:
        assert policy["kind"] in docs_site.POLICY_KINDS and not docs_site.is_random_policy(policy["name"]), (env_id, policy)


def test_random_policy_names_are_recognised():
    assert docs_site.is_random_policy("random") and docs_site.is_random_policy("random_queries")
    assert not docs_site.is_random_policy("knockoff") and not docs_site.is_random_policy("randomized_smoothing")


def test_a_hand_written_page_comes_first_and_the_generated_part_follows_without_its_title():
    merged = docs_site.merge_page("# Zoo\n\n## Victim classifiers\n\ntext\n", "# Zoo\n\n## Trained agents\n\n| a |\n")
    assert merged == "# Zoo\n\n## Victim classifiers\n\ntext\n\n## Trained agents\n\n| a |\n"
    for path in docs_site.MERGED_PAGES:  # each merged page has its hand-written first part in docs/
        head = (ROOT / "docs" / path).read_text(encoding="utf-8")
        assert head.startswith("# "), path
    for _, path in docs_site.HAND_WRITTEN_PAGES:
        assert (ROOT / "docs" / path).read_text(encoding="utf-8").startswith("# "), path


def test_cli_page_has_every_command():
    import typer

    from deploy_envs.cli import app

    page = docs_site.cli_page().text
    group = typer.main.get_command(app)
    for name in group.list_commands(None):
        assert f"## `deploy-envs {name}" in page, f"command {name} missing from the CLI page"
    assert "## `deploy-envs docs build`" in page and "--out" in page


def test_env_page_carries_registration_agents_and_scenarios():
    page = docs_site.env_page("deploy_envs/Evasion-v0").text
    for needle in ("## Description", "## Action Space", "## Version History", "## Spaces as Gymnasium prints them", "Box(-1.0, 1.0, (64,), float32)",
                   "## Argument table", "`pgd`", "`evasion-ppo-scores`", "success_rate", "`quickstart`", "../animations/Evasion-v0.gif"):
        assert needle in page, f"Evasion-v0 page lacks {needle!r}"
    game = docs_site.env_page("deploy_envs/AttackDefense-v0").text
    front, body = game.split("\n---\n", 1)  # the front matter (search boost), then the page from its title
    assert front == f"---\nsearch:\n  boost: {docs_site.ENV_PAGE_SEARCH_BOOST}" and docs_site.ENV_PAGE_SEARCH_BOOST > 1
    assert body.lstrip("\n").startswith("# AttackDefense-v0") and "attacker: action space" in game and "`psro-attack-defense`" in game


# --------------------------------------------------------------------------- the built site, in a browser
def _chromium() -> str | None:
    for candidate in (os.environ.get("DEPLOY_ENVS_CHROMIUM"), "/usr/bin/chromium", shutil.which("chromium"),
                      shutil.which("chromium-browser"), shutil.which("google-chrome")):
        if candidate and Path(candidate).exists():
            return candidate
    return None


@pytest.fixture(scope="session")
def chromium_path():
    path = _chromium()
    if path is None:
        msg = ("no Chromium browser is installed (looked for $DEPLOY_ENVS_CHROMIUM, /usr/bin/chromium, chromium, chromium-browser, "
               "google-chrome): the docs site's browser tests need one, e.g. apt-get install chromium")
        pytest.fail(msg)
    return path


@pytest.fixture(scope="session")
def built_site(tmp_path_factory, chromium_path):
    """The site built once per test run with ``deploy-envs docs build`` (strict), shared by xdist workers."""
    from filelock import FileLock
    from typer.testing import CliRunner

    from deploy_envs.cli import app

    # under xdist every worker has its own basetemp inside the run's one: build there, once, under a lock
    base = tmp_path_factory.getbasetemp()
    shared = base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base
    site = shared / "docs-site"
    with FileLock(str(shared / "docs-site.lock")):
        if not (site / "index.html").exists():
            r = CliRunner().invoke(app, ["docs", "build", "--out", str(site), "--no-progress"])
            assert r.exit_code == 0, r.output + repr(r.exception)
    return site


class _Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):  # noqa: D401 - no request log on the test output
        pass


@pytest.fixture(scope="session")
def served_site(built_site):
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(_Quiet, directory=str(built_site)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/"
    server.shutdown()
    server.server_close()


@pytest.fixture(scope="session")
def browser(chromium_path):
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=chromium_path, headless=True, args=CHROMIUM_ARGS)
        yield b
        b.close()


def _status(url: str) -> int:
    try:
        with urllib.request.urlopen(url, timeout=10) as r:
            return r.status
    except urllib.error.HTTPError as e:
        return e.code


@pytest.mark.browser
def test_every_env_and_game_page_loads_with_working_links_and_images(served_site, browser):
    page = browser.new_page()
    host = urllib.parse.urlparse(served_site).netloc
    checked: dict[str, int] = {}
    problems: list[str] = []
    for env_id in ALL_IDS:
        name = docs_site.page_name(env_id)
        folder = "envs" if env_id in ENV_CATALOG else "games"
        url = f"{served_site}{folder}/{name}/"
        response = page.goto(url, wait_until="load")
        if response is None or response.status != 200:
            problems.append(f"{url}: status {None if response is None else response.status}")
            continue
        if page.locator("h1").first.inner_text().strip().rstrip("¶").strip() != name:
            problems.append(f"{url}: heading is {page.locator('h1').first.inner_text()!r}")
        hrefs = page.eval_on_selector_all("a[href]", "els => els.map(e => e.href)")
        internal = {h.split("#", 1)[0] for h in hrefs if urllib.parse.urlparse(h).netloc == host}
        assert len(internal) > 40, f"{url}: only {len(internal)} internal links (the navigation alone has more)"
        for target in sorted(internal):
            if target not in checked:
                checked[target] = _status(target)
            if checked[target] != 200:
                problems.append(f"{url}: link {target} -> {checked[target]}")
        images = page.eval_on_selector_all("img", "els => els.map(e => [e.currentSrc || e.src, e.complete, e.naturalWidth])")
        for src, complete, width in images:
            if not complete or width <= 0:
                problems.append(f"{url}: image {src} did not load")
        if docs_site.renders_rgb(env_id) and not any(src.endswith(f"/animations/{name}.gif") for src, _, _ in images):
            problems.append(f"{url}: no animation shown")
    page.close()
    assert not problems, "\n".join(problems)
    assert len(checked) >= len(ALL_IDS)


@pytest.mark.browser
@pytest.mark.parametrize("query", ["TrojanDetection-v0", "deploy_envs/TrojanDetection-v0"])
def test_search_finds_an_env_by_its_id(served_site, browser, query):
    page = browser.new_page()
    page.goto(served_site, wait_until="load")
    box = page.locator("input.md-search__input")
    box.click()  # opens the search dialog (the theme loads its index in a web worker)
    # type once the index is loaded (the dialog says "Initializing search" until then; slow on a loaded 2-core machine),
    # key by key as a user does: the theme searches on key events
    page.wait_for_function("() => { const m = document.querySelector('.md-search-result__meta');"
                           " return m !== null && !/initializing/i.test(m.textContent); }", timeout=90_000)
    box.press_sequentially(query)
    results = page.locator(".md-search-result__item a")
    results.first.wait_for(timeout=90_000)
    # the worker answers each key, and the list of a partly typed id may still be showing: wait until the first
    # link highlights the whole id's last words (its ?h= holds the query the list answers)
    page.wait_for_function("() => { const a = document.querySelector('.md-search-result__item a'); if (a === null) return false;"
                           " const words = (new URL(a.href).searchParams.get('h') || '').toLowerCase().split(/\\s+/);"
                           " return words.includes('trojandetection') && words.includes('v0'); }", timeout=90_000)
    hrefs = results.evaluate_all("els => els.map(e => e.href)")
    page.close()
    assert any("/envs/TrojanDetection-v0/" in h for h in hrefs[:3]), f"search for {query!r} gave {hrefs[:10]}"


def test_search_index_splits_a_full_id_into_words_every_env_page_holds(built_site):
    """The search plugin's separator cuts ``deploy_envs/Name-v0`` at the slash and the hyphen, as it cuts the pages' text."""
    import re

    index = json.loads((built_site / "search" / "search_index.json").read_text(encoding="utf-8"))
    separator = index["config"]["separator"]
    for env_id in ALL_IDS:
        name = docs_site.page_name(env_id)
        words = [w.lower() for w in re.split(separator, env_id) if w]
        assert words == ["deploy_envs", name.rsplit("-", 1)[0].lower(), name.rsplit("-", 1)[1].lower()], (env_id, separator, words)
        folder = "envs" if env_id in ENV_CATALOG else "games"
        page = next(d for d in index["docs"] if d["location"] == f"{folder}/{name}/")
        text = {w.lower() for w in re.split(separator, re.sub(r"<[^>]+>", " ", page["title"] + " " + page["text"])) if w}
        assert set(words) <= text, f"{env_id}: the search index of its page lacks {set(words) - text}"


@pytest.mark.browser
def test_screenshot_of_an_env_page_is_not_blank(served_site, browser, tmp_path_factory):
    from PIL import Image

    out = Path(os.environ.get("DEPLOY_ENVS_DOCS_SCREENSHOT") or tmp_path_factory.mktemp("screenshots") / "Evasion-v0.png")
    out.parent.mkdir(parents=True, exist_ok=True)
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    page.goto(f"{served_site}envs/Evasion-v0/", wait_until="load")
    page.wait_for_function("Array.from(document.images).every(i => i.complete)")
    png = page.screenshot(path=str(out), full_page=False)
    page.close()
    pixels = np.asarray(Image.open(io.BytesIO(png)).convert("RGB"), dtype=np.float32)
    assert pixels.shape[:2] == (900, 1280)
    assert pixels.var() > 0, "the screenshot is one flat colour"
    assert len(np.unique(pixels.reshape(-1, 3), axis=0)) > 50, "the screenshot has almost no colours: nothing rendered"
    print(f"screenshot of envs/Evasion-v0/: {out}")

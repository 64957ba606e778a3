"""The dashboard in a real headless Chromium against a real multi-process devnet (4
validators, BFT consensus, p2p), with apps deployed by the real `flux-wallet`.

What a user sees: the overview's figures are the chain's; an app they register shows up
on its page with its 3 instances and their nodes while the page stays open; the deploy
form names a pasted smart quote at its field and prices a spec exactly as the wallet
does; and an app description that is HTML stays text. Every page is saved as a
screenshot in artifacts/dashboard/.

All tests of this module share one devnet and one browser, so they run in one xdist
worker (`--dist loadgroup` in the Makefile) and in file order.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest
from selenium.common.exceptions import NoAlertPresentException, StaleElementReferenceException
from selenium.webdriver import Chrome
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webelement import WebElement
from selenium.webdriver.support.ui import Select, WebDriverWait

from tests.dashboard.browser import screenshot, start_chromium
from tests.integration.harness import Devnet
from tests.wallet.conftest import Cli
from tests.wallet.test_e2e import write_spec

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("dashboard-browser")]

START_TIMEOUT_S = 60.0  # four node processes and a browser on a 2-core CI machine
PAGE_TIMEOUT_S = 30.0  # a page's data, or the next few blocks, on a loaded CI machine
XSS = "<img src=x onerror=alert(1)>"
T = TypeVar("T")


@pytest.fixture(scope="module")
def devnet(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Devnet]:
    net = Devnet(tmp_path_factory.mktemp("dashboard-net"), agents=True)
    net.start_all()
    try:
        net.wait_height([0, 1, 2, 3], 2, timeout=START_TIMEOUT_S)
        yield net
    finally:
        net.close()


@pytest.fixture(scope="module")
def driver(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Chrome]:
    browser = start_chromium(tmp_path_factory.mktemp("chromium-profile"))
    try:
        yield browser
    finally:
        browser.quit()


@pytest.fixture(scope="module")
def cli(devnet: Devnet, tmp_path_factory: pytest.TempPathFactory) -> Cli:
    wallet = Cli(tmp_path_factory.mktemp("wallet") / "wallet", devnet.url(1))
    wallet.import_devnet()
    return wallet


# What in the browser's console means the page broke: an exception its script did not catch,
# or something the Content-Security-Policy refused (an injected script would show up here).
CONSOLE_FAILURES = ("Uncaught", "Content Security Policy", "Refused to")


def console(driver: Chrome) -> list[str]:
    """Console messages since the last call (reading them empties the browser's buffer)."""
    entries: list[dict[str, Any]] = driver.get_log("browser")  # type: ignore[no-untyped-call]
    return [str(entry.get("message", "")) for entry in entries]


@pytest.fixture(autouse=True)
def no_script_errors(driver: Chrome) -> Iterator[None]:
    console(driver)  # start from an empty console
    yield
    failures = [m for m in console(driver) if any(mark in m for mark in CONSOLE_FAILURES)]
    assert failures == [], failures


def wait(driver: Chrome, condition: Callable[[Chrome], T], what: str) -> T:
    """Poll `condition` until it is truthy, failing after PAGE_TIMEOUT_S with `what`.

    Live pages redraw when a block changes their data, so an element found in one poll
    may be gone in the next: that poll simply counts as "not yet".
    """
    result: T = WebDriverWait(
        driver,
        PAGE_TIMEOUT_S,
        poll_frequency=0.2,
        ignored_exceptions=(StaleElementReferenceException,),
    ).until(condition, message=f"timed out after {PAGE_TIMEOUT_S}s waiting for {what}")
    return result


def find(driver: Chrome, css: str) -> list[WebElement]:
    return driver.find_elements(By.CSS_SELECTOR, css)


def rows(driver: Chrome, css: str) -> list[dict[str, Any]]:
    """Matching elements read in one script run (one consistent DOM, however live):
    each one's data-* attributes, its cells' text and its whole text."""
    found: list[dict[str, Any]] = driver.execute_script(
        """return [...document.querySelectorAll(arguments[0])].map((e) => ({
            data: {...e.dataset},
            cells: [...e.querySelectorAll('td, .value')].map((c) => c.textContent),
            text: e.textContent,
        }))""",
        css,
    )
    return found


def text(driver: Chrome, css: str) -> str:
    """The text of the first element matching `css` ("" if none), read in one script run."""
    found: str = driver.execute_script(
        "const e = document.querySelector(arguments[0]); return e ? e.innerText : ''", css
    )
    return found


def click(driver: Chrome, css: str) -> None:
    """Click `css`, again if a redraw replaced the element between finding and clicking."""

    def clicked(d: Chrome) -> bool:
        elements = find(d, css)
        if elements:
            elements[0].click()
        return bool(elements)

    wait(driver, clicked, f"{css} to click")


def open_page(driver: Chrome, devnet: Devnet, hash_route: str, ready_css: str) -> None:
    driver.get(f"{devnet.url(0)}/{hash_route}")
    wait(driver, lambda d: find(d, ready_css), f"{ready_css} on {hash_route}")


def go(driver: Chrome, hash_route: str, ready_css: str) -> None:
    """Follow an in-page link (no reload): the page's state, and the websocket, live on."""
    driver.execute_script("location.hash = arguments[0]", hash_route)
    wait(driver, lambda d: find(d, ready_css), f"{ready_css} on {hash_route}")


def cards(driver: Chrome) -> dict[str, Any]:
    return {c["data"]["stat"]: json.loads(c["data"]["value"]) for c in rows(driver, ".card")}


def height_card(driver: Chrome) -> int:
    return int(cards(driver).get("height", -1))


def test_overview_shows_the_chain_stats_and_follows_new_blocks(
    devnet: Devnet, driver: Chrome
) -> None:
    open_page(driver, devnet, "#/", "#stat-cards .card")
    keys = [
        "active_nodes",
        "total_cores",
        "total_ram_mb",
        "total_storage_gb",
        "countries",
        "operators",
        "apps_underplaced",
    ]

    def figures_match(d: Chrome) -> dict[str, Any] | None:
        """The stats when the page shows exactly them (values, their text, the tier table);
        the API is read before and after the page, so a change in between cannot pass."""
        before = devnet.get(0, "/network/stats")
        shown = rows(d, "#stat-cards .card")
        tier_rows = rows(d, "#tiers tr[data-tier]")
        after = devnet.get(0, "/network/stats")
        if before != after:
            return None
        values = {c["data"]["stat"]: json.loads(c["data"]["value"]) for c in shown}
        texts = {c["data"]["stat"]: c["cells"][0] for c in shown}
        tiers = {r["data"]["tier"]: r["cells"][1] for r in tier_rows}
        matches = (
            values == {k: before[k] for k in keys}
            and texts["active_nodes"] == str(before["active_nodes"])
            and texts["total_cores"] == f"{before['total_cores']:,}"
            and texts["total_storage_gb"] == f"{before['total_storage_gb']:,} GB"
            and tiers == {tier: str(n) for tier, n in before["nodes_by_tier"].items()}
        )
        return before if matches else None

    stats = wait(driver, figures_match, "the overview's figures to equal /network/stats")
    assert stats is not None
    # (under a loaded CI machine a validator may miss a check and be down for a while)
    assert stats["active_nodes"] >= 3 and stats["total_cores"] > 0, stats
    wait(driver, lambda d: rows(d, "#chart-block-time rect"), "bars in the block time chart")
    # live: the height card moves with the chain, with no reload
    driver.execute_script("window.loadedOnce = true")
    height = height_card(driver)
    assert height >= 2
    wait(driver, lambda d: height_card(d) > height + 1, "the height card to follow new blocks")
    assert driver.execute_script("return window.loadedOnce") is True

    # the node's own health and its agent, as /agent reports them
    def agent_panel(d: Chrome) -> str | None:
        text: str = d.find_element(By.ID, "this-node").text
        return text if "healthy" in text else None

    panel = wait(driver, agent_panel, "the agent panel to show the node's health")
    assert panel is not None and "process" in panel and "unhealthy" not in panel, panel
    screenshot(driver, "overview")


def test_registered_app_shows_its_instances_without_a_reload(
    devnet: Devnet, driver: Chrome, cli: Cli, tmp_path: Path
) -> None:
    open_page(driver, devnet, "#/apps/web1", "#app-missing")
    driver.execute_script("window.loadedOnce = true")
    proc = cli.run("app", "register", str(write_spec(tmp_path / "web1.yaml", "web1")), "-a", "6")
    assert "3 of 3 instances placed" in proc.stdout, proc.stdout
    wait(driver, lambda d: len(rows(d, "#instances tr.instance")) == 3, "3 instance rows")
    assert driver.execute_script("return window.loadedOnce") is True  # never reloaded
    app = devnet.get(0, "/apps/web1")
    instances = rows(driver, "#instances tr.instance")
    assert {r["data"]["node"] for r in instances} == {i["node_id"] for i in app["instances"]}
    assert {r["cells"][2] for r in instances} == {i["endpoint"] for i in app["instances"]}
    assert text(driver, "#app-description") == "an end-to-end test app"
    assert find(driver, "#underplaced") == []
    assert "null" not in text(driver, "#main")  # no optional section rendered as "null"
    wait(driver, lambda d: "app registered" in text(d, "#main"), "its events")
    # the event's owner (hex in the event) is shown as the owner's bech32 address
    assert find(driver, f'table.events a[href="#/accounts/{app["owner"]}"]')
    screenshot(driver, "app")

    # its first node's page says it runs web1
    host = sorted(i["node_id"] for i in app["instances"])[0]
    go(driver, f"#/nodes/{host}", "#assignments")
    wait(driver, lambda d: "web1" in text(d, "#assignments"), "web1 on node")
    screenshot(driver, "node")

    # the lists and the explorer, reached the way a user does
    go(driver, "#/nodes", "#nodes tbody tr")
    assert len(rows(driver, "#nodes tbody tr")) == 4
    click(driver, 'th[data-sort="node_id"]')
    wait(driver, lambda d: find(d, 'th.sorted-asc[data-sort="node_id"]'), "sorted by node")
    ids = [r["data"]["node"] for r in rows(driver, "#nodes tbody tr")]
    assert ids == sorted(ids) and len(ids) == 4
    tier = Select(driver.find_element(By.ID, "filter-tier"))
    tier.select_by_value("cumulus")  # the devnet's validators are all Stratus nodes
    wait(driver, lambda d: text(d, "#node-count") == "0 of 4 nodes", "the tier filter")
    tier.select_by_value("stratus")
    wait(driver, lambda d: text(d, "#node-count") == "4 of 4 nodes", "the tier filter")
    screenshot(driver, "nodes")
    go(driver, "#/apps", '#apps tr[data-app="web1"]')
    screenshot(driver, "apps")
    go(driver, "#/explorer", "#blocks tbody tr")
    screenshot(driver, "explorer")
    search = driver.find_element(By.ID, "search-q")
    search.send_keys("web1")
    driver.find_element(By.CSS_SELECTOR, "#search button").click()
    wait(driver, lambda d: d.execute_script("return location.hash") == "#/apps/web1", "search")
    wait(driver, lambda d: find(d, "#instances tr.instance"), "the app page from search")
    registered = app["registered_height"]
    go(driver, f"#/blocks/{registered}", "#main table")
    wait(driver, lambda d: "app register" in text(d, "#main"), "the tx")
    screenshot(driver, "block")
    register_tx = devnet.get(0, f"/blocks/{registered}")["txs"]
    tx_id = next(t["id"] for t in register_tx if t["kind"] == "app_register")
    click(driver, f'a[href="#/txs/{tx_id}"]')
    wait(driver, lambda d: '"name": "web1"' in text(d, "#main pre"), "the tx page's payload")
    screenshot(driver, "tx")
    go(driver, f"#/accounts/{app['owner']}", "#balance")
    screenshot(driver, "account")


def test_deploy_form_names_a_smart_quote_and_prices_like_the_wallet(
    devnet: Devnet, driver: Chrome, cli: Cli, tmp_path: Path
) -> None:
    open_page(driver, devnet, "#/deploy", '#verdict[data-valid="true"]')
    env = driver.find_element(By.CSS_SELECTOR, '[data-path="components[0].environment"]')
    env.send_keys("GREETING=\u201chello\u201d")
    path = "components[0].environment[0]"
    problem = wait(
        driver,
        lambda d: find(
            d, f'[data-field="components[0].environment"] li.problem[data-path="{path}"]'
        ),
        "the env field's problem",
    )[0]
    assert "U+201C LEFT DOUBLE QUOTATION MARK" in problem.text and path in problem.text
    assert problem.get_attribute("data-code") == "typographic_character"
    env_field = driver.find_element(By.CSS_SELECTOR, '[data-field="components[0].environment"]')
    assert "has-problem" in (env_field.get_attribute("class") or "").split()
    assert find(driver, '#verdict[data-valid="false"]')
    screenshot(driver, "deploy-problem")

    env.clear()
    env.send_keys("GREETING=hello")
    for name, value in (("name", "priced"), ("instances", "4"), ("expire", "2500")):
        box = driver.find_element(By.CSS_SELECTOR, f'#deploy-form [data-path="{name}"]')
        box.clear()
        box.send_keys(value)
    ram = driver.find_element(By.CSS_SELECTOR, '[data-path="components[0].ram_mb"]')
    ram.clear()
    ram.send_keys("1500")

    def priced(d: Chrome) -> str | None:
        spec = d.find_element(By.ID, "spec-file").text
        valid = find(d, '#verdict[data-valid="true"]')
        return spec if valid and '"priced"' in spec and '"expire": 2500' in spec else None

    spec_text = wait(driver, priced, "a valid, priced spec")
    assert spec_text is not None
    shown_units = int(driver.find_element(By.ID, "price").get_attribute("data-units") or -1)
    spec_file = tmp_path / "priced.json"
    spec_file.write_text(spec_text)
    quote = cli.json("app", "price", str(spec_file), "-a", "6")
    assert shown_units == quote["price"] > 0
    assert driver.find_element(By.ID, "price").text.endswith(" FLUX")
    command = driver.find_element(By.ID, "command").text
    assert "flux-wallet app register priced.json" in command
    cli.run("app", "validate", str(spec_file), "-a", "6")  # the file itself is accepted
    screenshot(driver, "deploy")


def test_deploy_form_writes_ports_with_protocol_and_domains(devnet: Devnet, driver: Chrome) -> None:
    """Ports are typed one a line; a banned host port is named under the ports field with
    its reason, and a valid line becomes the spec's per-port form."""
    open_page(driver, devnet, "#/deploy", '#verdict[data-valid="true"]')
    ports = driver.find_element(By.CSS_SELECTOR, '[data-path="components[0].ports"]')
    ports.clear()
    ports.send_keys("26700:80")
    path = "components[0].ports[0].host"
    problem = wait(
        driver,
        lambda d: find(d, f'[data-field="components[0].ports"] li.problem[data-path="{path}"]'),
        "the banned port's problem under the ports field",
    )[0]
    assert problem.get_attribute("data-code") == "out_of_range"
    assert "reserved for the node's p2p" in problem.text
    ports.clear()
    ports.send_keys("8080:80 blog.example.com\n31053:53/udp")

    def written(d: Chrome) -> str | None:
        spec = d.find_element(By.ID, "spec-file").text
        valid = find(d, '#verdict[data-valid="true"]')
        return spec if valid and '"protocol": "udp"' in spec else None

    spec = json.loads(wait(driver, written, "a valid spec with both ports") or "{}")
    assert spec["components"][0]["ports"] == [
        {"host": 8080, "container": 80, "domains": ["blog.example.com"]},
        {"host": 31053, "container": 53, "protocol": "udp"},
    ]


def test_markup_in_an_app_description_stays_text(
    devnet: Devnet, driver: Chrome, cli: Cli, tmp_path: Path
) -> None:
    spec = tmp_path / "xss.json"
    spec.write_text(
        json.dumps(
            {
                "name": "xss",
                "description": XSS,
                "instances": 3,
                "expire": 1_000,
                "components": [
                    {
                        "name": "web",
                        "image": "nginx:1.27",
                        "ports": [31090],
                        "container_ports": [80],
                        "environment": [f"NOTE={XSS}"],
                        "cpu": "0.1",
                        "ram_mb": 128,
                        "disk_gb": 1,
                    }
                ],
            }
        )
    )
    cli.run("app", "register", str(spec), "-a", "6")
    open_page(driver, devnet, "#/apps", '#apps tr[data-app="xss"]')
    # In this same page (no reload), catch any alert() an injected handler might call.
    driver.execute_script("window.alerts = []; window.alert = (m) => window.alerts.push(m)")
    go(driver, "#/apps/xss", "#app-description")
    assert text(driver, "#app-description") == XSS
    assert find(driver, "#app-description *") == []  # a text node, no element
    assert find(driver, "img") == []  # nowhere on the page
    assert XSS in text(driver, "#components")
    go(driver, "#/apps", '#apps tr[data-app="xss"]')
    assert XSS in text(driver, '#apps tr[data-app="xss"]') and find(driver, "img") == []
    assert driver.execute_script("return window.alerts") == []
    with pytest.raises(NoAlertPresentException):
        driver.switch_to.alert.text  # noqa: B018 (reading it is how Selenium checks)
    go(driver, "#/apps/xss", "#app-description")
    screenshot(driver, "app-xss")


def test_underplaced_app_says_why(devnet: Devnet, driver: Chrome, cli: Cli, tmp_path: Path) -> None:
    """Five instances on a four-node network: the page says how many run and why not all."""
    spec = write_spec(tmp_path / "wide.yaml", "wide", instances=5)
    spec.write_text(spec.read_text().replace("31080", "31100"))
    open_page(driver, devnet, "#/apps/wide", "#app-missing")
    cli.run("app", "register", str(spec), "-a", "6")
    wait(driver, lambda d: rows(d, "#underplaced"), "the under-placement notice")
    app = devnet.get(0, "/apps/wide")
    assert app["placed"] < app["wanted"] == 5 and app["underplaced_reason"], app

    def notice_matches(d: Chrome) -> bool:
        notice = rows(d, "#underplaced")
        placed = len(rows(d, "#instances tr.instance"))
        return bool(notice) and f"{placed} of 5" in notice[0]["text"] and placed <= 4

    wait(driver, notice_matches, "the notice to say how many of 5 run")
    assert app["underplaced_reason"] in rows(driver, "#underplaced")[0]["text"]
    screenshot(driver, "app-underplaced")

    # the overview once apps run: under-placed count and the charts over the test's blocks
    go(driver, "#/", '[data-stat="apps_underplaced"]')
    wait(driver, lambda d: cards(d).get("apps_underplaced") == 1, "the under-placed count")
    screenshot(driver, "overview-with-apps")

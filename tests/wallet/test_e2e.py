"""The wallet CLI as a user runs it: a subprocess against a real node API on loopback.

Each test uses its own wallet directory and its own devnet account (4: money,
5: nodes, 6: apps, 7: errors), so the tests never depend on one another's order.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from fluxchain.core.appspec import AppSpec
from fluxchain.core.crypto import SigningKey, encode_address
from fluxchain.core.params import COIN
from fluxchain.core.pricing import compute_price
from fluxchain.genesis_builder import devnet_params
from tests.support.ports import closed_port
from tests.support.wait import wait_until
from tests.wallet.conftest import Cli
from wallet.amounts import format_amount, format_flux
from wallet.client import NodeClient

FEE = devnet_params().min_fee
SPEC = """\
name: {name}
description: an end-to-end test app
instances: {instances}
expire: {expire}
components:
  - name: web
    image: nginx:1.27
    ports: [{{host: {port}, container: 80, domains: [{domains}]}}]
    environment: ["GREETING={greeting}"]
    cpu: 0.5
    ram_mb: 256
    disk_gb: 1
"""


def write_spec(
    path: Path,
    name: str,
    *,
    instances: int = 3,
    expire: int = 5_000,
    greeting: str = "hi",
    port: int = 31080,
    domains: str = "",
) -> Path:
    path.write_text(
        SPEC.format(
            name=name,
            instances=instances,
            expire=expire,
            greeting=greeting,
            port=port,
            domains=domains,
        ),
        encoding="utf-8",
    )
    return path


def wait_confirmed(cli: Cli, tx_id: str, deadline_s: float = 20.0) -> dict[str, Any]:
    """The tx's status once confirmed; it must stay pending until then."""
    seen: list[dict[str, Any]] = []

    def confirmed() -> bool:
        status: dict[str, Any] = cli.json("tx", "status", tx_id)
        assert status["status"] in ("pending", "confirmed"), status
        seen.append(status)
        return bool(status["status"] == "confirmed")

    try:
        wait_until(confirmed, deadline_s, f"tx {tx_id} confirmed")
    except AssertionError as exc:
        exc.add_note(f"last status: {seen[-1:]}")
        raise
    return seen[-1]


def test_send_moves_exact_amounts_and_quick_sends_get_consecutive_nonces(cli: Cli) -> None:
    """A user sends 12.5 FLUX, then two payments without waiting: all three land."""
    accounts = cli.import_devnet()
    assert accounts[0]["path"] == "m/44'/19167'/0'/0/4"
    to = accounts[3]["address"]  # account7
    assert cli.json("address", "--account", "7")["address"] == to
    before_from, before_to = cli.balance("account4"), cli.balance(to)
    assert before_from == 1_000_000 * COIN

    result = cli.json("send", to, "12.5", "--account", "account4")
    assert result["status"] == "confirmed" and result["height"] >= 1
    assert result["tx"]["kind"] == "transfer"
    assert cli.balance("account4") == before_from - 1_250_000_000 - FEE
    assert cli.balance(to) == before_to + 1_250_000_000

    human = cli.run("send", to, "0.00000001", "-a", "account4").stdout
    assert "confirmed at height" in human

    first = cli.json("send", to, "1", "-a", "account4", "--no-wait")
    second = cli.json("send", to, "2", "-a", "account4", "--no-wait")
    assert first["status"] == second["status"] == "pending"
    assert second["nonce"] == first["nonce"] + 1
    for sent in (first, second):
        confirmed = wait_confirmed(cli, sent["id"])
        # Its events are each proven, their completeness is not: the JSON says which.
        assert confirmed["verified"] is True, confirmed
        assert confirmed["events_complete_verified"] is False, confirmed
    text = cli.run("tx", "status", second["id"]).stdout
    assert "each event shown is proven, not that none is missing" in text, text
    assert cli.balance(to) == before_to + 1_250_000_000 + 1 + 3 * COIN
    assert cli.json("balance", "--account", "4")["nonce"] == second["nonce"] + 1


def test_sending_dust_to_a_new_account_is_refused_and_the_deposit_is_counted(cli: Cli) -> None:
    """Issue 26 #7: creating an account burns `account_deposit` on top of the amount. The
    wallet refuses a transfer below it to a new address before signing, and a transfer
    that creates an account costs amount + deposit + fee, as the wallet said."""
    cli.import_devnet()
    deposit = devnet_params().account_deposit
    new = encode_address(bytes(range(20)), devnet_params().address_hrp)
    nonce = cli.json("balance", "account4")["nonce"]
    line = cli.error_line("send", new, "0.00000001", "-a", "account4", expect=1)
    assert line.startswith("error [bad_amount]: ") and "new account" in line
    assert cli.json("balance", "account4")["nonce"] == nonce
    before = cli.balance("account4")
    result = cli.json("send", new, "0.001", "-a", "account4")
    assert result["status"] == "confirmed"
    assert cli.balance(new) == deposit  # 0.001 FLUX is the devnet's deposit
    assert cli.balance("account4") == before - 2 * deposit - FEE


def test_register_update_unregister_a_node_of_each_tier(cli: Cli) -> None:
    """An operator makes hot keys and stakes a Cumulus, a Nimbus and a Stratus node."""
    cli.import_devnet()
    before = cli.balance("account5")
    keys = [cli.json("node", "keygen") for _ in range(3)]
    # node keys 0..3 of this mnemonic run the genesis validators: keygen skips them
    assert [k["path"].rsplit("/", 1)[1] for k in keys] == ["4", "5", "6"]
    out_file = cli.wallet_dir.parent / "node_key.json"
    exported = cli.json("node", "keygen", "--index", "6", "--out", str(out_file))
    assert exported["public_key"] == keys[2]["public_key"]
    assert out_file.stat().st_mode & 0o777 == 0o600

    # the hot key by wallet name, by hex, or from the node_key.json that keygen wrote
    key_args = {
        "cumulus": ["--node-pubkey", keys[0]["name"]],
        "nimbus": ["--node-pubkey", keys[1]["public_key"]],
        "stratus": ["--node-key-file", str(out_file)],
    }
    node_ids: dict[str, str] = {}
    for tier, country in (("cumulus", "DE"), ("nimbus", "US"), ("stratus", "JP")):
        proc = cli.run(
            "node",
            "register",
            "-a",
            "account5",
            "--tier",
            tier,
            *key_args[tier],
            "--endpoint",
            f"127.0.0.1:{31000 + len(node_ids)}",
            "--country",
            country,
        )
        assert f"registered as {tier}" in proc.stdout
        node_id = proc.stdout.split("node id ", 1)[1].split()[0]
        node_ids[tier] = node_id

    mine = cli.json("nodes", "list", "--mine")["nodes"]
    assert {n["node_id"]: n["tier"] for n in mine} == {v: k for k, v in node_ids.items()}
    assert {n["status"] for n in mine} == {"registered"}
    assert {n["continent"] for n in mine} == {"EU", "NA", "AS"}
    collateral = (1_000 + 12_500 + 40_000) * COIN
    assert cli.balance("account5") == before - collateral - 3 * FEE
    table = cli.run("nodes", "list", "--tier", "nimbus").stdout
    assert node_ids["nimbus"] in table and node_ids["cumulus"] not in table

    cli.run("node", "update", node_ids["cumulus"], "-a", "account5", "--endpoint", "10.0.0.9:26700")
    status = cli.json("node", "status", node_ids["cumulus"])
    assert status["endpoint"] == "10.0.0.9:26700" and status["country"] == "DE"
    by_key = cli.json("node", "status", keys[0]["public_key"])
    assert by_key["node_id"] == node_ids["cumulus"]
    # rotating the hot key: the wallet holds the new key, which signs its proof of possession
    fresh = cli.json("node", "keygen")
    cli.run(
        "node", "update", node_ids["nimbus"], "-a", "account5",
        "--new-node-pubkey", fresh["public_key"],
    )  # fmt: skip
    assert cli.json("node", "status", node_ids["nimbus"])["node_key"] == fresh["public_key"]
    # a key the wallet does not hold cannot be proven, so it is refused before sending
    stranger = SigningKey(b"\x11" * 32).public_key.hex()
    line = cli.error_line(
        "node", "update", node_ids["nimbus"], "-a", "account5", "--new-node-pubkey", stranger,
        expect=1,
    )  # fmt: skip
    assert line.startswith("error [bad_input]: ") and "proof of possession" in line

    proc = cli.run("node", "unregister", node_ids["cumulus"], "-a", "account5")
    assert "unbonding" in proc.stdout
    assert cli.json("node", "status", node_ids["cumulus"])["status"] == "unbonding"


def test_app_register_update_extend_cancel_refund(cli: Cli, tmp_path: Path) -> None:
    """A customer deploys an app from YAML, sees where it runs, changes it, and cancels."""
    cli.import_devnet()
    confirmed = cli.json("nodes", "list", "--tier", "stratus", "--status", "confirmed")["nodes"]
    genesis_nodes = {n["node_id"] for n in confirmed}  # the 4 validators; others never confirm
    assert len(genesis_nodes) == 4
    spec = write_spec(tmp_path / "app.yaml", "hello")

    assert "valid" in cli.run("app", "validate", str(spec), "-a", "account6").stdout
    quote = cli.json("app", "price", str(spec), "-a", "account6")
    params = devnet_params()
    owner = cli.json("address", "account6")["address"]
    parsed = AppSpec.from_json(
        {
            "name": "hello",
            "owner": owner,
            "instances": 3,
            "expire": 5_000,
            "components": [
                {
                    "name": "web",
                    "image": "nginx:1.27",
                    "ports": [31080],
                    "container_ports": [80],
                    "environment": ["GREETING=hi"],
                    "cpu": "0.5",
                    "ram_mb": 256,
                    "disk_gb": 1,
                }
            ],
        },
        "tflux",
    )
    assert quote["price"] == compute_price(parsed, params, 5_000)
    assert quote["app_charge"] == params.app_charge > 0  # shown: burnt, never refunded

    before = cli.balance("account6")
    proc = cli.run("app", "register", str(spec), "-a", "account6")
    hosts = [
        line.split("runs on node ", 1)[1].split()[0]
        for line in proc.stdout.splitlines()
        if "runs on node" in line
    ]
    assert len(hosts) == 3 and len(set(hosts)) == 3 and set(hosts) <= genesis_nodes, proc.stdout
    assert "3 of 3 instances placed" in proc.stdout
    assert cli.balance("account6") == before - quote["price"] - quote["app_charge"] - FEE
    status = cli.json("app", "status", "hello")
    assert status["placed"] == 3 and {i["node_id"] for i in status["instances"]} == set(hosts)
    assert [a["name"] for a in cli.json("apps", "list", "--mine")["apps"]] == ["hello"]

    write_spec(spec, "hello", instances=4)
    updated = cli.json("app", "update", str(spec), "-a", "account6")
    assert updated["app"]["placed"] == 4
    assert any(e["kind"] == "assigned" for e in updated["events"])

    expire_before = cli.json("app", "status", "hello")["expire_height"]
    extended = cli.json("app", "extend", "hello", "--blocks", "1000", "-a", "account6")
    extend_event = next(e for e in extended["events"] if e["kind"] == "app_extended")
    assert extend_event["expire_height"] == expire_before + 1_000

    before_cancel = cli.balance("account6")
    cancelled = cli.json("app", "cancel", "hello", "--yes", "-a", "account6")
    refund = cancelled["refund"]
    assert refund > 0
    assert cli.balance("account6") == before_cancel + refund - FEE
    assert cli.json("apps", "list", "--mine")["apps"] == []


def test_every_error_is_one_line_with_a_reason_and_an_exit_status(cli: Cli, tmp_path: Path) -> None:
    """What a user sees when things go wrong — and that nothing was sent."""
    accounts = cli.import_devnet()
    to = accounts[0]["address"]

    # node unreachable
    dead = f"http://127.0.0.1:{closed_port()}"
    line = cli.error_line("--node", dead, "balance", expect=3)
    assert line.startswith("error [node_unreachable]: ") and dead in line

    # insufficient funds, checked before sending: an empty account and a too-large send
    cli.run("add-account", "--index", "40")
    key = cli.json("node", "keygen")
    line = cli.error_line(
        "node", "register", "-a", "account40", "--tier", "stratus",
        "--node-pubkey", key["name"], "--endpoint", "127.0.0.1:31999", "--country", "FR",
        expect=4,
    )  # fmt: skip
    assert line.startswith("error [insufficient_funds]: ") and "40000" in line
    nonce = cli.json("balance", "account7")["nonce"]
    line = cli.error_line("send", to, "2000000", "-a", "account7", expect=4)
    assert line.startswith("error [insufficient_funds]: ")
    assert cli.json("balance", "account7")["nonce"] == nonce

    # invalid spec: a smart quote pasted into an env value names the field and the character
    bad = write_spec(tmp_path / "bad.yaml", "quoted", greeting="\u201chi\u201d")
    proc = cli.run("app", "validate", str(bad), expect=5)
    problems = [ln for ln in proc.stderr.splitlines() if "environment" in ln]
    assert len(problems) == 1, proc.stderr
    assert problems[0].startswith("error [invalid_spec]: components[0].environment[0]: ")
    assert "U+201C LEFT DOUBLE QUOTATION MARK" in problems[0]
    assert "[typographic_character]" in problems[0]
    cli.run("app", "register", str(bad), "-a", "account7", expect=5)
    assert cli.json("balance", "account7")["nonce"] == nonce
    # …and offline, from a genesis file, with no node at all
    genesis = Path(__file__).resolve().parents[2] / "genesis" / "devnet.json"
    offline = cli.run("--node", dead, "app", "validate", str(bad), "--genesis", str(genesis),
                      expect=5)  # fmt: skip
    assert "U+201C" in offline.stderr

    # nonce conflict: a nonce the chain has already spent
    cli.run("send", to, "1", "-a", "account7")
    line = cli.error_line("send", to, "2", "-a", "account7", "--nonce", "0", expect=6)
    assert line.startswith("error [nonce_conflict]: ") and "nonce_mismatch" in line

    # a name taken: the node refuses the tx at once (its dry-run on the committed state,
    # rev18c 2), with the chain's reason, and nothing is spent
    spec = write_spec(tmp_path / "dup.yaml", "dup", expire=200)
    cli.run("app", "register", str(spec), "-a", "account7")
    nonce = cli.json("balance", "account7")["nonce"]
    line = cli.error_line("app", "register", str(spec), "-a", "account7", expect=7)
    assert line.startswith("error [app_exists]: the node refused the tx: ") and "'dup'" in line
    assert cli.json("balance", "account7")["nonce"] == nonce
    # a domain another live app owns: refused with the owner named (on a port of
    # their own: the module's node keeps 31080 free for the later tests' apps)
    shop = "shop.example.com"
    spec = write_spec(tmp_path / "shop.yaml", "shop", expire=200, port=31081, domains=shop)
    cli.run("app", "register", str(spec), "-a", "account7")
    copycat = write_spec(tmp_path / "copy.yaml", "copycat", expire=200, port=31082, domains=shop)
    line = cli.error_line("app", "register", str(copycat), "-a", "account7", expect=7)
    assert line.startswith("error [domain_taken]: ") and "'shop'" in line, line

    # an address of another network is refused before anything is signed
    line = cli.error_line("send", "flux1zcru4ecswexc8xl665fh3me5lqjfjkkfw3nxmp", "1", expect=1)
    assert line.startswith("error [bad_address]: ")

    # wrong password: nothing sent, nothing written
    keystore = cli.wallet_dir / "wallet.json"
    saved = keystore.read_bytes()
    cli.extra_env["FLUX_WALLET_PASSWORD"] = "not the password"
    line = cli.error_line("send", to, "1", "-a", "account7", expect=9)
    assert line.startswith("error [wrong_password]: ")
    cli.error_line("add-account", expect=9)
    assert keystore.read_bytes() == saved

    # JSON mode: the same error as an object on stdout
    err = cli.json("--node", dead, "balance", expect=3)
    assert err["error"]["reason"] == "node_unreachable"


def test_a_relocation_pays_for_the_instances_it_moves(cli: Cli, tmp_path: Path) -> None:
    """`node update --country` on a node that hosts app instances: the chain burns
    `relocation_price` per instance out of the fee, and the wallet's default fee covers it
    (the minimum fee alone was refused relocation_fee_too_low)."""
    owners = {a["address"]: a["name"] for a in cli.import_devnet("0-7")}
    cli.run("app", "register", str(write_spec(tmp_path / "app.yaml", "movers")), "-a", "account6")
    host = cli.json("app", "status", "movers")["instances"][0]["node_id"]
    view = cli.json("node", "status", host)
    hosted = len(NodeClient(cli.node_url).node_assignments(host))
    assert hosted >= 1
    country = "FR" if view["country"] != "FR" else "DE"
    owner = owners[view["owner"]]
    # a --fee below what the move costs is refused before anything is sent
    line = cli.error_line(
        "node", "update", host, "-a", owner, "--country", country, "--fee", "0.00001", expect=1
    )
    assert line.startswith("error [bad_amount]: ") and "instances it moves" in line, line
    moved = cli.json("node", "update", host, "-a", owner, "--country", country)
    assert moved["status"] == "confirmed", moved
    params = devnet_params()
    assert moved["tx"]["fee"] == params.min_fee + hosted * params.relocation_price
    assert cli.json("node", "status", host)["country"] == country


def test_send_with_a_memo_pays_its_share_of_the_fee_and_the_payee_sees_it(cli: Cli) -> None:
    """Issue 22: `send --memo` carries a note to the payee. A 300-byte memo costs the
    minimum fee plus two more (one per started 256 bytes); the wallet shows that fee, the
    confirmed tx carries the memo, and a memo over 1 KiB or a --fee below the memo's
    price is refused before anything is signed."""
    accounts = cli.import_devnet()
    to = accounts[3]["address"]  # account7
    memo = "invoice 2026-117 " + "x" * 283  # 300 bytes of UTF-8
    nonce = cli.json("balance", "account4")["nonce"]

    too_long = cli.error_line("send", to, "1", "-a", "account4", "--memo", "é" * 513, expect=1)
    assert too_long.startswith("error [bad_input]: ") and "1026 bytes" in too_long, too_long
    too_cheap = cli.error_line(
        "send", to, "1", "-a", "account4", "--memo", memo, "--fee", format_amount(2 * FEE), expect=1
    )
    assert too_cheap.startswith("error [bad_amount]: ") and "300-byte memo" in too_cheap
    assert cli.json("balance", "account4")["nonce"] == nonce  # nothing was sent

    before = cli.balance("account4")
    shown = cli.run("send", to, "1", "-a", "account4", "--memo", memo).stdout
    assert f"memo of 300 bytes: fee {format_flux(3 * FEE)} (the minimum" in shown, shown
    assert "confirmed at height" in shown
    assert cli.balance("account4") == before - COIN - 3 * FEE
    latest = cli.json("send", to, "1", "-a", "account4", "--memo", "deposit tag 7")
    assert latest["tx"]["fee"] == 2 * FEE
    assert latest["tx"]["payload"]["memo"] == b"deposit tag 7".hex(), latest["tx"]

"""Transaction builders shared by the CLI and the tests: user input in, signed Tx out.

Every builder checks what can be checked without the chain's state (address network,
endpoint shape, country codes, the full app-spec validation with the chain's own
`validate_json`) and raises WalletError with a reason code, so nothing is signed that
the node would refuse for a reason the user could have been told first. Stateful rules
(nonce, balance, ownership, name taken) stay the chain's; `estimate_cost` says what a tx
will debit so the CLI can check the balance before sending.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Final

import yaml

from fluxchain.core import vrf
from fluxchain.core.appspec import AppSpec, SpecProblem, validate_json
from fluxchain.core.crypto import (
    SigningKey,
    address_of,
    decode_address,
    encode_address,
    is_valid_pubkey,
)
from fluxchain.core.errors import FluxError, TxError
from fluxchain.core.params import Params, Tier
from fluxchain.core.pricing import compute_period_numerator, compute_price
from fluxchain.core.tx import (
    NODE_ID_SIZE,
    AppCancel,
    AppExtend,
    AppRegister,
    AppSecrets,
    AppUpdate,
    Hardware,
    NodeRegister,
    NodeUnregister,
    NodeUpdate,
    Payload,
    Transfer,
    Tx,
    check_endpoint,
    check_location,
    decode_tx,
    prove_node_key,
)
from wallet.errors import WalletError, WalletReason, rejected

MAX_SPEC_FILE: Final = 256 * 1024  # a spec of 10 components with every field at its limit fits
TIERS: Final[dict[str, Tier]] = {t.name.lower(): t for t in Tier}

# ISO 3166-1 alpha-2 country -> continent code (the codes the chain accepts). Territories
# follow the continent they lie on; `--continent` overrides any entry.
_CONTINENT_COUNTRIES: Final = {
    "AF": "DZ AO BJ BW BF BI CV CM CF TD KM CG CD CI DJ EG GQ ER SZ ET GA GM GH GN GW KE LS LR "
    "LY MG MW ML MR MU YT MA MZ NA NE NG RE RW SH ST SN SC SL SO ZA SS SD TZ TG TN UG EH ZM ZW",
    "AN": "AQ BV GS HM TF",
    "AS": "AF AM AZ BH BD BT BN KH CN CY GE HK IN ID IR IQ IL JP JO KZ KW KG LA LB MO MY MV MN "
    "MM NP KP OM PK PS PH QA SA SG KR LK SY TW TJ TH TL TR TM AE UZ VN YE IO CC CX",
    "EU": "AX AL AD AT BY BE BA BG HR CZ DK EE FO FI FR DE GI GR GG HU IS IE IM IT JE XK LV LI "
    "LT LU MT MD MC ME NL MK NO PL PT RO RU SM RS SK SI ES SJ SE CH UA GB VA",
    "NA": "AI AG AW BS BB BZ BM BQ VG CA KY CR CU CW DM DO SV GL GD GP GT HT HN JM MQ MX MS NI "
    "PA PR BL KN LC MF PM VC SX TT TC US VI UM",
    "OC": "AS AU CK FJ PF GU KI MH FM NR NC NZ NU NF MP PW PG PN WS SB TK TO TV VU WF",
    "SA": "AR BO BR CL CO EC FK GF GY PY PE SR UY VE",
}
CONTINENT_OF: Final[dict[str, str]] = {
    country: continent
    for continent, countries in _CONTINENT_COUNTRIES.items()
    for country in countries.split()
}


# -- signing ----------------------------------------------------------------------------------


def sign(key: SigningKey, params: Params, nonce: int, fee: int, payload: Payload) -> Tx:
    """Sign `payload` and run the node's stateless checks on the result (size, fee, …)."""
    tx = Tx.create(key, params.chain_id, nonce, fee, payload)
    try:
        decode_tx(tx.raw, params)
    except TxError as exc:
        raise rejected(str(exc.reason), f"the node would refuse this tx: {exc.message}") from None
    return tx


# -- money ------------------------------------------------------------------------------------


def parse_address(text: str, hrp: str) -> bytes:
    """A bech32 address of this network; WalletError(bad_address) otherwise."""
    try:
        return decode_address(text, hrp)
    except FluxError as exc:
        raise WalletError(WalletReason.BAD_ADDRESS, exc.message) from None


def transfer(to: str, amount: int, hrp: str) -> Transfer:
    return Transfer(parse_address(to, hrp), amount)


# -- nodes ------------------------------------------------------------------------------------


def parse_tier(name: str) -> Tier:
    tier = TIERS.get(name.strip().lower())
    if tier is None:
        raise WalletError(WalletReason.BAD_INPUT, f"tier {name!r} is not one of {', '.join(TIERS)}")
    return tier


def parse_pubkey(text: str, what: str = "node key") -> bytes:
    try:
        key = bytes.fromhex(text.strip().removeprefix("0x"))
    except ValueError:
        raise WalletError(WalletReason.BAD_INPUT, f"{what} {text!r} is not hex") from None
    if len(key) != 33 or not is_valid_pubkey(key):
        raise WalletError(
            WalletReason.BAD_INPUT, f"{what} must be a 33-byte compressed secp256k1 key (66 hex)"
        )
    return key


def parse_node_id(text: str) -> bytes:
    try:
        node_id = bytes.fromhex(text.strip())
    except ValueError:
        raise WalletError(WalletReason.BAD_INPUT, f"node id {text!r} is not hex") from None
    if len(node_id) != NODE_ID_SIZE:
        raise WalletError(WalletReason.BAD_INPUT, "a node id is 20 bytes (40 hex characters)")
    return node_id


def location(country: str, continent: str | None) -> tuple[str, str]:
    """(country, continent) upper-cased and checked; the continent defaults from the country."""
    country = country.strip().upper()
    if continent is None:
        found = CONTINENT_OF.get(country)
        if found is None:
            raise WalletError(
                WalletReason.BAD_INPUT,
                f"country {country!r} is not an ISO 3166-1 alpha-2 code this wallet knows; "
                "pass --continent (AF, AN, AS, EU, NA, OC, SA)",
            )
        continent = found
    continent = continent.strip().upper()
    _checked(check_location, country, continent, "node")
    return country, continent


def node_register(
    tier: Tier,
    node_key: bytes,
    endpoint: str,
    country: str,
    continent: str,
    hardware: Hardware,
    owner_key: bytes,
) -> NodeRegister:
    _checked(check_endpoint, endpoint, "endpoint")
    if node_key == owner_key:
        raise WalletError(
            WalletReason.BAD_INPUT,
            "the node key must differ from the collateral account's key "
            "(make one with `flux-wallet node keygen`)",
        )
    # The proof of possession binds the tx's nonce: `with_key_proof` adds it once known,
    # with the VRF key derived from the node secret and its proof.
    return NodeRegister(tier, node_key, endpoint, country, continent, hardware, b"", b"", b"")


def node_update(
    node_id: bytes,
    endpoint: str,
    country: str,
    continent: str,
    new_node_key: bytes = b"",
    top_up: int = 0,
) -> NodeUpdate:
    """A node update; a new key still needs its proof of possession (`with_key_proof`).
    `top_up` base units go from the owner's balance into the node's collateral."""
    _checked(check_endpoint, endpoint, "endpoint")
    return NodeUpdate(node_id, endpoint, country, continent, new_node_key, b"", top_up)


def needs_key_proof(payload: Payload) -> bytes | None:
    """The node key whose proof of possession `payload` still needs, if any."""
    if isinstance(payload, NodeRegister) and not payload.key_proof:
        return payload.node_key
    if isinstance(payload, NodeUpdate) and payload.new_node_key and not payload.new_key_proof:
        return payload.new_node_key
    return None


def with_key_proof(
    payload: Payload, node_key: SigningKey, params: Params, owner: bytes, nonce: int
) -> Payload:
    """`payload` with the node key's proof of possession for a tx by `owner` at `nonce`."""
    if node_key.public_key != needs_key_proof(payload):
        raise WalletError(WalletReason.BAD_INPUT, "this is not the node key the tx names")
    # The node's VRF key comes from the same secret, as the node derives it to sign its
    # block reveals (core/vrf.py): no second key to keep.
    vrf_key, vrf_proof = vrf.claim(node_key, params.chain_id)
    if isinstance(payload, NodeRegister):
        proof = prove_node_key(node_key, params.chain_id, owner, nonce)
        return replace(payload, key_proof=proof, vrf_key=vrf_key, vrf_proof=vrf_proof)
    assert isinstance(payload, NodeUpdate)
    proof = prove_node_key(node_key, params.chain_id, owner, nonce, payload.node_id)
    return replace(payload, new_key_proof=proof, new_vrf_key=vrf_key, new_vrf_proof=vrf_proof)


def node_unregister(node_id: bytes) -> NodeUnregister:
    return NodeUnregister(node_id)


def tier_hardware(params: Params, tier: Tier) -> Hardware:
    """The tier's caps (what `node register` declares unless told otherwise): a declaration
    is a lasting ceiling on what the node offers apps (no tx changes it), and the node's
    benchmark bounds what counts below it, so the caps lose an honest machine nothing."""
    t = params.tier(tier)
    return Hardware(t.max_cores, t.max_ram_mb, t.max_disk_gb)


# -- apps -------------------------------------------------------------------------------------


class InvalidSpecError(WalletError):
    """A spec with problems; each has a field path, a problem code and a sentence."""

    def __init__(self, source: str, problems: list[SpecProblem]) -> None:
        count = f"{len(problems)} problem{'s' if len(problems) != 1 else ''}"
        super().__init__(WalletReason.INVALID_SPEC, f"{source}: {count}")
        self.problems = problems


def read_spec_file(path: Path) -> Any:
    """The JSON value of a YAML (`safe_load`) or JSON spec file."""
    try:
        with path.open("rb") as handle:
            data = handle.read(MAX_SPEC_FILE + 1)
    except OSError as exc:
        raise WalletError(WalletReason.BAD_INPUT, f"cannot read {path}: {exc.strerror}") from None
    if len(data) > MAX_SPEC_FILE:
        raise WalletError(WalletReason.INVALID_SPEC, f"{path} is larger than {MAX_SPEC_FILE} bytes")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise WalletError(
            WalletReason.INVALID_SPEC, f"{path}: not UTF-8 text (byte {exc.start})"
        ) from None
    if path.suffix.lower() == ".json":
        try:
            return json.loads(text)
        except json.JSONDecodeError as exc:
            raise WalletError(
                WalletReason.INVALID_SPEC,
                f"{path} line {exc.lineno} column {exc.colno}: {exc.msg}",
            ) from None
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" line {mark.line + 1} column {mark.column + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or str(exc)
        raise WalletError(WalletReason.INVALID_SPEC, f"{path}{where}: {problem}") from None


def with_owner(obj: Any, owner: str | None) -> Any:
    """The spec with `owner` filled in when the file leaves it out (the signer owns it)."""
    if owner is not None and isinstance(obj, dict) and not obj.get("owner"):
        return {**obj, "owner": owner}
    return obj


def parse_spec(obj: Any, params: Params, source: str) -> AppSpec:
    """Validate exactly as the chain does; InvalidSpecError lists every problem."""
    problems = validate_json(obj, params, params.address_hrp)
    if problems:
        raise InvalidSpecError(source, problems)
    return AppSpec.from_json(obj, params.address_hrp)


def check_owner(spec: AppSpec, public_key: bytes, hrp: str) -> None:
    """The chain lets only spec.owner register or update an app: say so before signing."""
    if spec.owner != address_of(public_key):
        raise WalletError(
            WalletReason.NOT_OWNER,
            f"spec.owner is {encode_address(spec.owner, hrp)}, but the signing account is "
            f"{encode_address(address_of(public_key), hrp)} (choose it with --account)",
        )


def app_register(spec: AppSpec) -> AppRegister:
    return AppRegister(spec)


def app_update(spec: AppSpec) -> AppUpdate:
    return AppUpdate(spec)


def app_extend(name: str, blocks: int) -> AppExtend:
    return AppExtend(name, blocks)


def app_cancel(name: str) -> AppCancel:
    return AppCancel(name)


@dataclass(frozen=True, slots=True)
class Quote:
    """What an app costs: per instance per price period, in total for `blocks` (the
    escrow, refundable while unspent), and the app charge that a register or an update
    burns on top, never refunded."""

    per_instance_period: int  # base units, rounded up
    instances: int
    blocks: int
    total: int
    charge: int


def quote(spec: AppSpec, params: Params, blocks: int | None = None) -> Quote:
    blocks = spec.expire if blocks is None else blocks
    per_period = -(-compute_period_numerator(spec, params) // 100)
    price = compute_price(spec, params, blocks)
    return Quote(per_period, spec.instances, blocks, price, params.app_charge)


# -- costs ------------------------------------------------------------------------------------


def replacement_charge(
    payload: Payload,
    params: Params,
    *,
    node: dict[str, Any] | None = None,
    hosted: int = 0,
    app: dict[str, Any] | None = None,
) -> int:
    """What the chain burns out of the fee for the instances a tx moves (on top of
    `min_fee`): a NODE_UPDATE that changes the location of an active node moves the
    `hosted` instances it runs; an APP_UPDATE moves at most the instances placed now
    (`app`: its /apps/{name} view), the bound the wallet pays since only the chain knows
    which ones the new spec displaces."""
    if isinstance(payload, NodeUpdate) and node is not None:
        moved = (payload.country, payload.continent) != (node["country"], node["continent"])
        active = node.get("status") == "confirmed"  # only an active node's instances move
        return hosted * params.relocation_price if moved and active else 0
    if isinstance(payload, AppUpdate) and app is not None:
        placed = min(int(app.get("placed", 0)), payload.spec.instances)
        return placed * params.relocation_price
    return 0


def estimate_cost(
    payload: Payload,
    params: Params,
    app: dict[str, Any] | None = None,
    *,
    new_account: bool = False,
    pending_set: bool = False,
) -> int:
    """What a tx debits besides its fee: amount (and, `new_account`: a transfer that
    creates its recipient, the burnt `account_deposit`), collateral (or a top-up), or
    app price (a register or an update: plus the burnt, non-refundable `app_charge`).
    `pending_set`: an APP_SECRETS sent before its register, which burns `account_deposit`
    when it creates the pending set (the estimate may be high when it replaces one).

    For APP_UPDATE the escrow the app still holds (`app`: its /apps/{name} view) counts
    towards the new price, as the chain's rule does; hosting paid since the last
    settlement is not known here, so the estimate may be slightly low.
    """
    if isinstance(payload, Transfer):
        return payload.amount + (params.account_deposit if new_account else 0)
    if isinstance(payload, NodeRegister):
        return params.tier(payload.tier).collateral
    if isinstance(payload, NodeUpdate):
        # a new node key's account will exist: the chain burns its deposit unless it is
        # there already (which the wallet does not ask; the estimate may be high)
        return payload.top_up + (params.account_deposit if payload.new_node_key else 0)
    if isinstance(payload, AppRegister):
        return compute_price(payload.spec, params, payload.spec.expire) + params.app_charge
    if isinstance(payload, AppUpdate):
        held = 0 if app is None else int(app.get("escrow", 0)) + int(app.get("refundable", 0))
        price = compute_price(payload.spec, params, payload.spec.expire)
        return max(0, price - held) + params.app_charge
    if isinstance(payload, AppExtend) and app is not None:
        spec = AppSpec.from_json(app["spec"], params.address_hrp)
        return compute_price(spec, params, payload.blocks)
    if isinstance(payload, AppSecrets) and pending_set:
        return params.account_deposit
    return 0


def _checked(check: Any, *args: Any) -> None:
    try:
        check(*args)
    except FluxError as exc:
        raise WalletError(WalletReason.BAD_INPUT, exc.message) from None

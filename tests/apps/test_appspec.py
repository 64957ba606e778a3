"""The app spec: canonical form, JSON form, and every validation rule with its path."""

from __future__ import annotations

import pytest

from fluxchain.core.appspec import (
    BANNED_HOST_PORTS,
    SPEC_VERSION,
    AppSpec,
    Component,
    Port,
    Problem,
    Protocol,
    SpecError,
    banned_port_reason,
    check_app_name,
    describe_characters,
    format_cpu,
    parse_cpu,
    validate,
    validate_json,
)
from fluxchain.core.crypto import encode_address
from fluxchain.core.encoding import decode_field_by_field, pack, unpack
from fluxchain.core.errors import DecodeError, Reason
from fluxchain.core.params import Tier
from tests.support.state import component, geo, make_params, spec

OWNER = bytes(range(20))
PARAMS = make_params()


def problems_of(s: AppSpec) -> dict[str, set[Problem]]:
    out: dict[str, set[Problem]] = {}
    for p in validate(s, PARAMS):
        out.setdefault(p.path, set()).add(p.code)
    return out


def one(s: AppSpec, path: str, code: Problem) -> None:
    found = problems_of(s)
    assert found == {path: {code}}, found


def test_valid_spec_has_no_problems() -> None:
    assert validate(spec(OWNER), PARAMS) == []


def test_canonical_round_trip() -> None:
    s = spec(OWNER, geolocation=geo("EU", "NA_US"), min_tier=Tier.NIMBUS, pinned_nodes=())
    raw = pack(s.to_fields())
    assert AppSpec.from_fields(unpack(raw)) == s


def test_json_round_trip() -> None:
    s = spec(OWNER, geolocation=geo("EU") + geo("EU_DE", allow=False))
    assert AppSpec.from_json(s.to_json("tflux"), "tflux") == s


# -- every rule ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "code"),
    [
        ("", Problem.MISSING),
        ("a" * 64, Problem.TOO_LONG),
        ("MyApp", Problem.BAD_FORMAT),
        ("my_app", Problem.BAD_FORMAT),
        ("1app", Problem.BAD_FORMAT),
        ("app-", Problem.BAD_FORMAT),
        ("app\u200b", Problem.INVISIBLE_CHARACTER),
    ],
)
def test_name_rules(name: str, code: Problem) -> None:
    one(spec(OWNER, name=name), "name", code)


@pytest.mark.parametrize("name", ["xn--80ak6aa92e", "xn--pple-43d", "ab--cd"])
def test_an_app_name_in_punycode_cannot_pose_as_another_apps_name(name: str) -> None:
    """The attack: an app's name is the first label of `<app>.<gateway domain>`, and a
    name in the reserved `xx--` form (RFC 5891) is an IDN label: "xn--80ak6aa92e" is
    U+0430 U+0440 U+0440 U+04CF U+0435 and "xn--pple-43d" U+0430 "pple", both shown by a
    browser as a look-alike of "apple": a phishing copy of the app `apple` at every
    gateway, under the gateway's own trusted domain. Names are plain LDH labels; the
    reserved `??--` form is refused."""
    one(spec(OWNER, name=name), "name", Problem.BAD_FORMAT)


def test_name_with_capitals_suggests_lowercase() -> None:
    (problem,) = validate(spec(OWNER, name="MyApp"), PARAMS)
    assert "'myapp'" in problem.message


def test_check_app_name_raises_invalid_spec() -> None:
    with pytest.raises(DecodeError) as info:
        check_app_name("Bad Name", "payload.name")
    assert info.value.reason is Reason.INVALID_SPEC
    assert "payload.name" in info.value.message


def test_description_rules() -> None:
    one(spec(OWNER, description="x" * 257), "description", Problem.TOO_LONG)
    one(spec(OWNER, description="hi\u200bthere"), "description", Problem.INVISIBLE_CHARACTER)
    assert validate(spec(OWNER, description="It\u2019s \u201cgreat\u201d"), PARAMS) == []


def test_owner_must_be_20_bytes() -> None:
    one(spec(b"\x01" * 19), "owner", Problem.BAD_ADDRESS)


def test_contact_rules() -> None:
    one(spec(OWNER, contacts=("a@b.c",) * 6), "contacts", Problem.TOO_MANY)
    one(spec(OWNER, contacts=("x" * 76,)), "contacts[0]", Problem.TOO_LONG)
    one(spec(OWNER, contacts=("",)), "contacts[0]", Problem.MISSING)
    one(
        spec(OWNER, contacts=("a@b.c", "\u201cme\u201d")),
        "contacts[1]",
        Problem.TYPOGRAPHIC_CHARACTER,
    )


def test_component_count_rules() -> None:
    one(spec(OWNER, components=()), "components", Problem.TOO_FEW)
    many = tuple(component(name=f"c{i}", ports=()) for i in range(11))
    one(spec(OWNER, components=many), "components", Problem.TOO_MANY)
    limited = make_params(app_max_components=2)
    three = tuple(component(name=f"c{i}", ports=()) for i in range(3))
    assert [p.path for p in validate(spec(OWNER, components=three), limited)] == ["components"]


def test_component_name_rules() -> None:
    one(spec(OWNER, components=(component(name=""),)), "components[0].name", Problem.MISSING)
    one(spec(OWNER, components=(component(name="Web"),)), "components[0].name", Problem.BAD_FORMAT)
    two = (component(), component(ports=(31001,)))
    one(spec(OWNER, components=two), "components[1].name", Problem.DUPLICATE)


def test_component_description_too_long() -> None:
    c = component(description="d" * 257)
    one(spec(OWNER, components=(c,)), "components[0].description", Problem.TOO_LONG)


@pytest.mark.parametrize(
    ("image", "code"),
    [
        ("", Problem.MISSING),
        ("Nginx:latest", Problem.BAD_FORMAT),
        ("nginx latest", Problem.BAD_FORMAT),
        ("n" * 201, Problem.TOO_LONG),
        ("nginx\u2013alpine", Problem.TYPOGRAPHIC_CHARACTER),
    ],
)
def test_image_rules(image: str, code: Problem) -> None:
    one(spec(OWNER, components=(component(image=image),)), "components[0].image", code)


@pytest.mark.parametrize(
    "image",
    ["nginx", "nginx:1.27", "runonflux/website:v2", "ghcr.io/org/app:1.0", "localhost:5000/a/b"],
)
def test_images_accepted(image: str) -> None:
    assert validate(spec(OWNER, components=(component(image=image),)), PARAMS) == []


def test_port_rules() -> None:
    c = component(ports=(31000, 31001, 31002, 31003, 31004, 31005))
    one(spec(OWNER, components=(c,)), "components[0].ports", Problem.TOO_MANY)
    c = component(ports=(80,))
    one(spec(OWNER, components=(c,)), "components[0].ports[0].host", Problem.OUT_OF_RANGE)
    c = component(ports=(Port(31000, 0),))
    one(spec(OWNER, components=(c,)), "components[0].ports[0].container", Problem.OUT_OF_RANGE)
    two = (component(), component(name="api"))
    one(spec(OWNER, components=two), "components[1].ports[0].host", Problem.DUPLICATE)


def test_host_ports_span_1024_to_65535() -> None:
    for host in (1024, 8080, 31000, 65535):
        assert validate(spec(OWNER, components=(component(ports=(host,)),)), PARAMS) == []
    for host in (1023, 443):
        c = component(ports=(host,))
        one(spec(OWNER, components=(c,)), "components[0].ports[0].host", Problem.OUT_OF_RANGE)


@pytest.mark.parametrize(
    ("host", "why"),
    [
        (26600, "p2p"),  # the node's own default p2p port
        (26700, "API"),  # and its API
        (26799, "devnets"),
        (2375, "Docker"),
        (16127, "Flux"),
        (8404, "gateway"),
    ],
)
def test_banned_port_is_refused_with_its_reason(host: int, why: str) -> None:
    c = component(ports=(Port(host, 80, Protocol.UDP),))
    problems = validate(spec(OWNER, components=(c,)), PARAMS)
    assert [(p.path, p.code) for p in problems] == [
        ("components[0].ports[0].host", Problem.OUT_OF_RANGE)
    ]
    assert "reserved for" in problems[0].message and why in problems[0].message
    assert banned_port_reason(host) is not None
    assert all(lo <= hi for lo, hi, _ in BANNED_HOST_PORTS)


def test_tcp_and_udp_on_one_port_number_do_not_conflict_in_a_spec() -> None:
    dns = component(name="dns", ports=(Port(31053, 53, Protocol.UDP),))
    web = component(name="web", ports=(Port(31053, 80, Protocol.TCP),))
    assert validate(spec(OWNER, components=(dns, web)), PARAMS) == []
    both = component(name="both", ports=(Port(31053, 53, Protocol.BOTH),))
    one(spec(OWNER, components=(dns, both)), "components[1].ports[0].host", Problem.DUPLICATE)
    one(spec(OWNER, components=(web, both)), "components[1].ports[0].host", Problem.DUPLICATE)


def domains(*names: str, protocol: Protocol = Protocol.TCP) -> Component:
    return component(ports=(Port(31000, 80, protocol, names),))


def test_domains_are_accepted_in_their_plain_form() -> None:
    for names in (("blog.example.com",), ("example.com", "www.example.com", "xn--bcher-kva.de")):
        assert validate(spec(OWNER, components=(domains(*names),)), PARAMS) == []


@pytest.mark.parametrize(
    ("domain", "code", "hint"),
    [
        ("Blog.Example.com", Problem.BAD_FORMAT, "capitals"),
        ("blog.example.com.", Problem.BAD_FORMAT, "'blog.example.com'"),
        ("10.0.0.1", Problem.BAD_FORMAT, "IP address"),
        ("[::1]", Problem.BAD_FORMAT, "IP address"),
        ("*.example.com", Problem.BAD_FORMAT, "wildcard"),
        ("b\u00fccher.de", Problem.BAD_FORMAT, "punycode"),
        ("intranet", Problem.BAD_FORMAT, "single label"),
        ("hello.apps.localhost", Problem.BAD_FORMAT, "loopback"),
        ("a..example.com", Problem.BAD_FORMAT, "empty label"),
        ("-a.example.com", Problem.BAD_FORMAT, "'-'"),
        ("example.com:8080", Problem.BAD_FORMAT, "port or path"),
        ("a" * 64 + ".com", Problem.BAD_FORMAT, "63"),
        (("a" * 60 + ".") * 5 + "com", Problem.TOO_LONG, "253"),
        ("", Problem.MISSING, "empty"),
        ("blog\u200b.example.com", Problem.INVISIBLE_CHARACTER, "ZERO WIDTH SPACE"),
    ],
)
def test_a_domain_with_uppercase_ip_or_trailing_dot_is_refused(
    domain: str, code: Problem, hint: str
) -> None:
    problems = validate(spec(OWNER, components=(domains(domain),)), PARAMS)
    assert [(p.path, p.code) for p in problems] == [("components[0].ports[0].domains[0]", code)]
    assert hint in problems[0].message, problems[0].message


def test_domain_rules_across_ports() -> None:
    many = domains("a.example.com", "b.example.com", "c.example.com", "d.example.com")
    one(spec(OWNER, components=(many,)), "components[0].ports[0].domains", Problem.TOO_MANY)
    udp = domains("a.example.com", protocol=Protocol.UDP)
    one(spec(OWNER, components=(udp,)), "components[0].ports[0].domains", Problem.MISMATCH)
    assert (
        validate(
            spec(OWNER, components=(domains("a.example.com", protocol=Protocol.BOTH),)), PARAMS
        )
        == []
    )
    twice = component(
        ports=(
            Port(31000, 80, domains=("a.example.com",)),
            Port(31001, 81, domains=("a.example.com",)),
        )
    )
    one(spec(OWNER, components=(twice,)), "components[0].ports[1].domains[0]", Problem.DUPLICATE)


def test_environment_rules() -> None:
    c = component(environment=tuple(f"K{i}=v" for i in range(21)))
    one(spec(OWNER, components=(c,)), "components[0].environment", Problem.TOO_MANY)
    c = component(environment=("K=" + "v" * 400,))
    one(spec(OWNER, components=(c,)), "components[0].environment[0]", Problem.TOO_LONG)
    c = component(environment=("novalue",))
    one(spec(OWNER, components=(c,)), "components[0].environment[0]", Problem.BAD_FORMAT)
    c = component(environment=("1KEY=v",))
    one(spec(OWNER, components=(c,)), "components[0].environment[0]", Problem.BAD_FORMAT)
    c = component(environment=("A=1", "A=2"))
    one(spec(OWNER, components=(c,)), "components[0].environment[1]", Problem.DUPLICATE)


def test_smart_quote_in_env_value_is_named_with_its_path_and_position() -> None:
    env = ("MODE=prod", "A=1", "B=2", "GREETING=\u201chello\u201d")
    s = spec(
        OWNER,
        components=(
            component(),
            component(name="api", ports=(), environment=env),
        ),
    )
    (problem,) = validate(s, PARAMS)
    assert problem.path == "components[1].environment[3]"
    assert problem.code is Problem.TYPOGRAPHIC_CHARACTER
    assert "U+201C LEFT DOUBLE QUOTATION MARK at position 9" in problem.message
    assert "U+201D RIGHT DOUBLE QUOTATION MARK at position 15" in problem.message
    assert str(problem).startswith("components[1].environment[3]: ")


def test_invisible_characters_are_named() -> None:
    assert "U+00A0 NO-BREAK SPACE at position 1" in describe_characters(
        "a\u00a0b", allow_typographic=True
    )
    assert "U+FEFF" in describe_characters("\ufeffx", allow_typographic=True)
    assert "U+200B ZERO WIDTH SPACE" in describe_characters("x\u200b", allow_typographic=True)
    assert describe_characters("plain ascii = fine", allow_typographic=False) == ""
    assert describe_characters("Grüße, 東京", allow_typographic=False) == ""
    c = component(environment=("K=a\u200bb",))
    one(spec(OWNER, components=(c,)), "components[0].environment[0]", Problem.INVISIBLE_CHARACTER)


def test_command_rules() -> None:
    c = component(command=("x",) * 21)
    one(spec(OWNER, components=(c,)), "components[0].command", Problem.TOO_MANY)
    c = component(command=("x" * 401,))
    one(spec(OWNER, components=(c,)), "components[0].command[0]", Problem.TOO_LONG)
    c = component(command=("run", "\u2014verbose"))
    one(spec(OWNER, components=(c,)), "components[0].command[1]", Problem.TYPOGRAPHIC_CHARACTER)


@pytest.mark.parametrize(
    ("path", "code"),
    [
        ("/", Problem.BAD_FORMAT),
        ("data", Problem.BAD_FORMAT),
        ("/a/../etc", Problem.BAD_FORMAT),
        ("/" + "d" * 200, Problem.TOO_LONG),
        ("/da\u00a0ta", Problem.INVISIBLE_CHARACTER),
    ],
)
def test_data_path_rules(path: str, code: Problem) -> None:
    one(spec(OWNER, components=(component(data_path=path),)), "components[0].data_path", code)


def test_resource_rules() -> None:
    one(spec(OWNER, components=(component(cpu=0),)), "components[0].cpu", Problem.OUT_OF_RANGE)
    one(
        spec(OWNER, components=(component(ram_mb=99),)),
        "components[0].ram_mb",
        Problem.OUT_OF_RANGE,
    )
    one(
        spec(OWNER, components=(component(disk_gb=0),)),
        "components[0].disk_gb",
        Problem.OUT_OF_RANGE,
    )
    big = tuple(component(name=f"c{i}", ports=(), cpu=100) for i in range(2))
    one(spec(OWNER, components=big), "components", Problem.OUT_OF_RANGE)
    big = tuple(component(name=f"c{i}", ports=(), ram_mb=30_000) for i in range(2))
    one(spec(OWNER, components=big), "components", Problem.OUT_OF_RANGE)
    big = tuple(component(name=f"c{i}", ports=(), disk_gb=500) for i in range(2))
    one(spec(OWNER, components=big), "components", Problem.OUT_OF_RANGE)


def test_instances_and_expire_come_from_params() -> None:
    one(spec(OWNER, instances=2), "instances", Problem.OUT_OF_RANGE)
    one(spec(OWNER, instances=101), "instances", Problem.OUT_OF_RANGE)
    one(spec(OWNER, expire=99), "expire", Problem.OUT_OF_RANGE)
    one(spec(OWNER, expire=264_001), "expire", Problem.OUT_OF_RANGE)
    assert validate(spec(OWNER, instances=2), make_params(app_min_instances=1)) == []


def test_geolocation_rules() -> None:
    one(spec(OWNER, geolocation=geo("XX")), "geolocation[0]", Problem.BAD_FORMAT)
    one(spec(OWNER, geolocation=geo("EU_de")), "geolocation[0]", Problem.BAD_FORMAT)
    one(spec(OWNER, geolocation=geo("EU", "EU")), "geolocation[1]", Problem.DUPLICATE)
    codes = ["EU", "NA", "AS", "AF", "OC", "SA", "AN", "EU_DE", "EU_FR", "EU_NL", "EU_PL"]
    one(spec(OWNER, geolocation=geo(*codes)), "geolocation", Problem.TOO_MANY)


def test_geolocation_semantics() -> None:
    s = spec(OWNER, geolocation=geo("EU") + geo("EU_DE", allow=False))
    assert s.location_allowed("EU", "FR")
    assert not s.location_allowed("EU", "DE")
    assert not s.location_allowed("NA", "US")
    assert spec(OWNER, geolocation=geo("NA", allow=False)).location_allowed("EU", "DE")
    assert spec(OWNER).location_allowed("AS", "JP")


def test_pinned_node_rules() -> None:
    nodes = tuple(bytes([i]) * 20 for i in range(3))
    assert validate(spec(OWNER, pinned_nodes=nodes), PARAMS) == []
    one(spec(OWNER, pinned_nodes=nodes[:2]), "pinned_nodes", Problem.TOO_FEW)
    one(spec(OWNER, pinned_nodes=(*nodes, nodes[0])), "pinned_nodes[3]", Problem.DUPLICATE)
    one(spec(OWNER, pinned_nodes=(*nodes, b"\x01" * 19)), "pinned_nodes[3]", Problem.BAD_FORMAT)
    one(
        spec(OWNER, pinned_nodes=tuple(i.to_bytes(20, "big") for i in range(121))),
        "pinned_nodes",
        Problem.TOO_MANY,
    )


def test_version_of_the_user_form() -> None:
    raw = spec(OWNER).to_json("tflux")
    assert raw["version"] == SPEC_VERSION
    for version in (1, SPEC_VERSION):  # version 1's form reads the same
        assert validate_json({**raw, "version": version}, PARAMS, "tflux") == []
    found = [(p.path, p.code) for p in validate_json({**raw, "version": 9}, PARAMS, "tflux")]
    assert found == [("version", Problem.OUT_OF_RANGE)]


def test_every_problem_is_reported_at_once() -> None:
    bad = spec(
        OWNER,
        name="Bad",
        instances=1,
        components=(component(image="", environment=("X=\u201c",), cpu=0),),
    )
    paths = {p.path for p in validate(bad, PARAMS)}
    assert paths == {
        "name",
        "instances",
        "components[0].image",
        "components[0].environment[0]",
        "components[0].cpu",
    }


# -- canonical decoding --------------------------------------------------------------------------


def test_from_fields_rejects_wrong_shapes() -> None:
    good = spec(OWNER).to_fields()
    for broken, reason in (
        (good[:-1], Reason.BAD_FIELD),
        ([1, *good[1:]], Reason.UNKNOWN_VERSION),  # a version 1 spec: parallel port lists
        ([*good[:1], "Bad Name", *good[2:]], Reason.INVALID_SPEC),
    ):
        with pytest.raises(DecodeError) as info:
            AppSpec.from_fields(broken)
        assert info.value.reason is reason
        assert decode_error(broken) == info.value.message  # the compiled decoder = the rule
    too_many = list(good)
    too_many[5] = [component().to_fields()] * 11
    with pytest.raises(DecodeError):
        AppSpec.from_fields(too_many)
    wrong_type = list(good)
    wrong_type[6] = "3"
    with pytest.raises(DecodeError, match=r"spec\.instances"):
        AppSpec.from_fields(wrong_type)
    bad_port = list(good)
    bad_port[5] = [component(ports=(Port(31000, 80),)).to_fields()]
    bad_port[5][0][3][0][2] = 4  # a protocol that is not tcp, udp or both
    with pytest.raises(DecodeError, match=r"spec\.components\[0\]\.ports\[0\]\.protocol"):
        AppSpec.from_fields(bad_port)


def decode_error(fields: object) -> str:
    with pytest.raises(DecodeError) as info:
        decode_field_by_field(AppSpec, fields)
    return info.value.message


def test_per_port_form_round_trips() -> None:
    ports = (
        Port(8080, 80, Protocol.TCP, ("blog.example.com", "www.blog.example.com")),
        Port(31053, 53, Protocol.UDP),
        Port(31054, 5353, Protocol.BOTH),
    )
    s = spec(OWNER, components=(component(ports=ports),))
    assert validate(s, PARAMS) == []
    assert AppSpec.from_fields(unpack(pack(s.to_fields()))) == s
    written = s.to_json("tflux")
    assert written["components"][0]["ports"] == [
        {
            "host": 8080,
            "container": 80,
            "protocol": "tcp",
            "domains": ["blog.example.com", "www.blog.example.com"],
        },
        {"host": 31053, "container": 53, "protocol": "udp", "domains": []},
        {"host": 31054, "container": 5353, "protocol": "both", "domains": []},
    ]
    assert AppSpec.from_json(written, "tflux") == s
    # protocol and domains may be left out: tcp, none
    raw = spec(OWNER).to_json("tflux")
    raw["components"][0]["ports"] = [{"host": 8080, "container": 80}]
    assert AppSpec.from_json(raw, "tflux").components[0].ports == (Port(8080, 80),)


def test_old_ports_form_is_accepted_as_tcp_without_domains() -> None:
    raw = spec(OWNER).to_json("tflux")
    raw["components"][0]["ports"] = [31000, 31001]
    raw["components"][0]["container_ports"] = [80, 443]
    parsed = AppSpec.from_json(raw, "tflux")
    assert parsed.components[0].ports == (Port(31000, 80), Port(31001, 443))
    assert all(p.protocol is Protocol.TCP and not p.domains for p in parsed.components[0].ports)
    assert validate(parsed, PARAMS) == []


def test_port_forms_explain_their_mistakes() -> None:
    raw = spec(OWNER).to_json("tflux")
    comp = raw["components"][0]
    comp["ports"], comp["container_ports"] = [31000, 31001], [80]
    found = {(p.path, p.code) for p in validate_json(raw, PARAMS, "tflux")}
    assert found == {("components[0].container_ports", Problem.MISMATCH)}
    comp["ports"], comp["container_ports"] = [31000, "31001", 31000], [80, 81, 82]
    found = {(p.path, p.code) for p in validate_json(raw, PARAMS, "tflux")}
    assert found == {  # each reported once, at the index the user wrote
        ("components[0].ports[1]", Problem.WRONG_TYPE),
        ("components[0].ports[2].host", Problem.DUPLICATE),
    }
    comp["ports"] = [
        {"host": 31000, "container": 80, "protocol": "sctp", "domain": ["a.example.com"]},
        31001,
        {"container": 80, "domains": ["A.example.com"]},
        {"host": 31000, "container": 80},
    ]
    found = {(p.path, p.code) for p in validate_json(raw, PARAMS, "tflux")}
    assert found == {
        ("components[0].container_ports", Problem.MISMATCH),  # not with the per-port form
        ("components[0].ports[0].protocol", Problem.BAD_FORMAT),
        ("components[0].ports[0].domain", Problem.UNKNOWN_FIELD),
        ("components[0].ports[1]", Problem.WRONG_TYPE),
        ("components[0].ports[2].host", Problem.MISSING),
        ("components[0].ports[2].domains[0]", Problem.BAD_FORMAT),
        ("components[0].ports[3].host", Problem.DUPLICATE),  # at the index written
    }
    unknown = next(p for p in validate_json(raw, PARAMS, "tflux") if p.path.endswith(".domain"))
    assert "'domains'" in unknown.message
    del comp["container_ports"]
    comp["ports"] = [{"host": 31000, "container": 80, "domains": ["A.example.com"]}]
    found = {(p.path, p.code) for p in validate_json(raw, PARAMS, "tflux")}
    assert found == {("components[0].ports[0].domains[0]", Problem.BAD_FORMAT)}


# -- JSON form -------------------------------------------------------------------------------


def user_spec() -> dict[str, object]:
    return {
        "name": "wordpress",
        "description": "my blog",
        "owner": encode_address(OWNER, "tflux"),
        "contacts": ["me@example.com"],
        "instances": 3,
        "expire": 22_000,
        "geolocation": {"allow": ["EU"], "deny": ["EU_DE"]},
        "min_tier": "nimbus",
        "components": [
            {
                "name": "wp",
                "image": "wordpress:6.5",
                "ports": [31080],
                "container_ports": [80],
                "environment": ["WORDPRESS_DB_HOST=db"],
                "data_path": "/var/www/html",
                "cpu": 1.5,
                "ram_mb": 2000,
                "disk_gb": 10,
            },
            {"name": "db", "image": "mysql:8", "cpu": "0.5", "ram_mb": 1000, "disk_gb": 5},
        ],
    }


def test_from_json_reads_the_user_form() -> None:
    s = AppSpec.from_json(user_spec(), "tflux")
    assert s.components[0].cpu == 15 and s.components[1].cpu == 5
    assert s.min_tier is Tier.NIMBUS
    assert s.owner == OWNER
    assert validate(s, PARAMS) == []
    assert s.location_allowed("EU", "FR") and not s.location_allowed("EU", "DE")


def test_from_json_reports_every_structural_problem() -> None:
    raw = user_spec()
    raw["owner"] = "flux1notanaddress"
    raw["enviromentParameters"] = []
    raw["instances"] = "3"
    comps = raw["components"]
    assert isinstance(comps, list)
    comps[0]["cpu"] = 0.25
    comps[1]["environment"] = [{"A": "b"}]
    with pytest.raises(SpecError) as info:
        AppSpec.from_json(raw, "tflux")
    found = {(p.path, p.code) for p in info.value.problems}
    assert found == {
        ("owner", Problem.BAD_ADDRESS),
        ("enviromentParameters", Problem.UNKNOWN_FIELD),
        ("instances", Problem.WRONG_TYPE),
        ("components[0].cpu", Problem.BAD_FORMAT),
        ("components[1].environment[0]", Problem.WRONG_TYPE),
    }
    assert info.value.reason is Reason.INVALID_SPEC
    unknown = next(p for p in info.value.problems if p.path == "enviromentParameters")
    assert "environment" in unknown.message


def test_from_json_network_must_match() -> None:
    raw = user_spec()
    raw["owner"] = encode_address(OWNER, "flux")
    with pytest.raises(SpecError, match="network"):
        AppSpec.from_json(raw, "tflux")


def test_validate_json_combines_structure_and_rules() -> None:
    raw = user_spec()
    raw["instances"] = 1
    comps = raw["components"]
    assert isinstance(comps, list)
    comps[0]["environment"] = ["WORDPRESS_DB_HOST=\u201cdb\u201d"]
    comps[1]["ram_mb"] = "lots"
    found = {(p.path, p.code) for p in validate_json(raw, PARAMS, "tflux")}
    assert found == {
        ("instances", Problem.OUT_OF_RANGE),
        ("components[0].environment[0]", Problem.TYPOGRAPHIC_CHARACTER),
        ("components[1].ram_mb", Problem.WRONG_TYPE),
    }
    assert validate_json([], PARAMS)[0].code is Problem.WRONG_TYPE


def test_cpu_text() -> None:
    assert parse_cpu("0.5") == 5 and parse_cpu(2) == 20 and parse_cpu(0.1) == 1
    assert parse_cpu(1.25) is None and parse_cpu(True) is None and parse_cpu("-1") is None
    assert format_cpu(5) == "0.5" and format_cpu(20) == "2" and format_cpu(15) == "1.5"

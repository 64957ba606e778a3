"""App specifications: the spec a customer signs, its two forms, and its one validation.

An app spec is shaped like Flux's v8 app specification, in our own snake_case:

    name, description, owner, contacts, components (each: name, description, image, ports
    (each: host, container, protocol, domains), environment, command, data_path, cpu, ram_mb,
    disk_gb, volumes (each: mount, mode)), instances, expire, geolocation (allow/deny
    rules), min_tier, pinned_nodes

Two forms exist:

- the **canonical** form (`to_fields` / `from_fields`): positional msgpack arrays, integers
  only, inside APP_REGISTER / APP_UPDATE payloads and the app records of the state;
- the **JSON** form (`to_json` / `from_json`): what users write as YAML or JSON; cpu is
  written in cores with at most one decimal ("0.5"), the owner as a bech32 address.

`validate(spec, params)` reports every problem at once, each with a field path
(`components[0].environment[3]`), a problem code and a sentence; invisible and
typographic characters are named (`U+201C LEFT DOUBLE QUOTATION MARK at position 7`).
The state machine and the wallet call the same function, so a spec the wallet accepts is
a spec the chain accepts. Nothing here reads the state.

Units: cpu in tenths of a core, RAM in MB, disk in GB — integers everywhere.

The package's modules, each with one job (import the names from this package):

    limits.py        the fixed bounds and the patterns fields follow
    diagnostics.py   problem codes, field paths, and the names of invisible characters
    spec.py          AppSpec, Component, Port, GeoRule (declared records: the canonical
                     codec), port keys, the geolocation rule
    rules.py         `validate`: one small function per rule, run in field order
    form.py          the user's JSON/YAML form: parsing with hints, `validate_json`
"""

from __future__ import annotations

from fluxchain.core.appspec.diagnostics import (
    Problem,
    SpecError,
    SpecProblem,
    app_name_problem,
    check_app_name,
    describe_characters,
    domain_problem,
    format_cpu,
)
from fluxchain.core.appspec.form import (
    parse_cpu,
    spec_from_json,
    spec_to_json,
    validate_json,
)
from fluxchain.core.appspec.limits import (
    BANNED_HOST_PORTS,
    CONTINENTS,
    MAX_APP_CPU,
    MAX_APP_DISK_GB,
    MAX_APP_NAME,
    MAX_APP_RAM_MB,
    MAX_COMMAND,
    MAX_COMMAND_ARG,
    MAX_COMPONENT_NAME,
    MAX_COMPONENTS_HARD,
    MAX_CONTACT,
    MAX_CONTACTS,
    MAX_CONTAINER_PORT,
    MAX_DATA_PATH,
    MAX_DESCRIPTION,
    MAX_DOMAIN,
    MAX_DOMAINS,
    MAX_ENV,
    MAX_ENV_ENTRY,
    MAX_EXPIRE_HARD,
    MAX_GEO_RULES,
    MAX_HOST_PORT,
    MAX_IMAGE,
    MAX_INSTANCES_HARD,
    MAX_PINNED,
    MAX_PORTS,
    MAX_VOLUMES,
    MIN_COMPONENT_CPU,
    MIN_COMPONENT_DISK_GB,
    MIN_COMPONENT_RAM_MB,
    MIN_DATA_PATH,
    MIN_HOST_PORT,
    NODE_ID_SIZE,
    OWNER_SIZE,
    SPEC_VERSION,
    TIER_NAMES,
    banned_port_reason,
)
from fluxchain.core.appspec.rules import (
    validate,
)
from fluxchain.core.appspec.spec import (
    MAX_PORT_KEY,
    AppSpec,
    Component,
    GeoRule,
    Port,
    Protocol,
    Volume,
    VolumeMode,
    location_allowed,
    port_key,
)

__all__ = [
    "BANNED_HOST_PORTS",
    "CONTINENTS",
    "MAX_APP_CPU",
    "MAX_APP_DISK_GB",
    "MAX_APP_NAME",
    "MAX_APP_RAM_MB",
    "MAX_COMMAND",
    "MAX_COMMAND_ARG",
    "MAX_COMPONENTS_HARD",
    "MAX_COMPONENT_NAME",
    "MAX_CONTACT",
    "MAX_CONTACTS",
    "MAX_CONTAINER_PORT",
    "MAX_DATA_PATH",
    "MAX_DESCRIPTION",
    "MAX_DOMAIN",
    "MAX_DOMAINS",
    "MAX_ENV",
    "MAX_ENV_ENTRY",
    "MAX_EXPIRE_HARD",
    "MAX_GEO_RULES",
    "MAX_HOST_PORT",
    "MAX_IMAGE",
    "MAX_INSTANCES_HARD",
    "MAX_PINNED",
    "MAX_PORTS",
    "MAX_PORT_KEY",
    "MAX_VOLUMES",
    "MIN_COMPONENT_CPU",
    "MIN_COMPONENT_DISK_GB",
    "MIN_COMPONENT_RAM_MB",
    "MIN_DATA_PATH",
    "MIN_HOST_PORT",
    "NODE_ID_SIZE",
    "OWNER_SIZE",
    "SPEC_VERSION",
    "TIER_NAMES",
    "AppSpec",
    "Component",
    "GeoRule",
    "Port",
    "Problem",
    "Protocol",
    "SpecError",
    "SpecProblem",
    "Volume",
    "VolumeMode",
    "app_name_problem",
    "banned_port_reason",
    "check_app_name",
    "describe_characters",
    "domain_problem",
    "format_cpu",
    "location_allowed",
    "parse_cpu",
    "port_key",
    "spec_from_json",
    "spec_to_json",
    "validate",
    "validate_json",
]

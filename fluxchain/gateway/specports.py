"""The adapter between an app spec's JSON form and what the gateway routes: one record per
published port, whatever shape the spec gives its ports.

Two shapes are read. Today's spec lists, per component, `ports` (host ports) and
`container_ports` as parallel integer lists. The per-port records of issue 20's spec (one
object per port: `{"host": 8080, "container": 80, "protocol": "tcp"|"udp"|"both",
"domains": [...]}`) are read from the same `ports` list when its items are objects
(`host_port` or `port` are read for `host` too). Only this module knows either shape.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Any, Final

from fluxchain.core.appspec.diagnostics import app_name_problem

MAX_DOMAINS_PER_PORT: Final = 16  # more than any spec allows; bounds what a lying node feeds us


class Transport(StrEnum):
    TCP = "tcp"
    UDP = "udp"
    BOTH = "both"


@dataclass(frozen=True, slots=True)
class PortSpec:
    """One published port of one component, as the spec declares it."""

    component: str
    index: int  # position in the component's ports: the agent reports addresses in this order
    host_port: int
    transport: Transport
    domains: tuple[str, ...]


class SpecShapeError(ValueError):
    """The spec JSON does not have a shape this gateway reads."""


def ports_of(spec: dict[str, Any]) -> list[PortSpec]:
    """Every published port of a spec, component by component, in spec order."""
    components = spec.get("components")
    if not isinstance(components, list):
        raise SpecShapeError("spec has no components list")
    out: list[PortSpec] = []
    for component in components:
        if not isinstance(component, dict) or not isinstance(component.get("name"), str):
            raise SpecShapeError("a component without a name")
        # it goes into backend names in HAProxy's config: the chain's rule, checked again
        if app_name_problem(component["name"]) is not None:
            raise SpecShapeError(f"component name {component['name'][:80]!r}")
        ports = component.get("ports", [])
        if not isinstance(ports, list):
            raise SpecShapeError(f"component {component['name']}: ports is not a list")
        for index, item in enumerate(ports):
            out.append(_port(component["name"], index, item))
    return out


def _port(component: str, index: int, item: Any) -> PortSpec:
    if isinstance(item, int) and not isinstance(item, bool):
        return PortSpec(component, index, _port_number(item), Transport.TCP, ())
    if not isinstance(item, dict):
        raise SpecShapeError(
            f"component {component}: port {index} is neither a number nor a record"
        )
    number = item.get("host", item.get("host_port", item.get("port")))
    transport = str(item.get("protocol", "tcp")).lower()
    if transport not in {t.value for t in Transport}:
        raise SpecShapeError(f"component {component}: port {index}: protocol {transport!r}")
    domains = item.get("domains", [])
    if not isinstance(domains, list) or len(domains) > MAX_DOMAINS_PER_PORT:
        raise SpecShapeError(f"component {component}: port {index}: domains is not a short list")
    names = tuple(d.lower() for d in domains if isinstance(d, str))
    return PortSpec(component, index, _port_number(number), Transport(transport), names)


def _port_number(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 < value < 65536:
        raise SpecShapeError(f"{value!r} is not a port number")
    return value

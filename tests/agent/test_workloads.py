"""The agent's pure parts: assignments → workloads, and the converge plan with backoff."""

from __future__ import annotations

from dataclasses import replace

from fluxchain.agent.workloads import (
    BACKOFF_MAX_S,
    STABLE_S,
    Observed,
    PublishedPort,
    Restarts,
    Workload,
    desired_workloads,
    plan,
)
from fluxchain.core.appspec import AppSpec, Component, Port, Protocol

OWNER = bytes(range(20))


def spec(name: str = "web1", env: str = "A=1", components: int = 1) -> AppSpec:
    comps = tuple(
        Component(
            name=f"c{i}",
            description="",
            image="python:3.11-slim",
            ports=(Port(31000 + i, 8080, Protocol.BOTH if i else Protocol.TCP),),
            environment=(env,),
            command=("python3", "-m", "http.server", "$PORT"),
            data_path="",
            cpu=5,
            ram_mb=256,
            disk_gb=1,
        )
        for i in range(components)
    )
    return AppSpec(name, "", OWNER, (), comps, 3, 5000)


def assignment(s: AppSpec, instance: int = 1) -> dict[str, object]:
    return {"app": s.name, "instance": instance, "spec": s.to_json("tflux")}


def test_every_component_of_every_assigned_instance_is_a_workload() -> None:
    got = desired_workloads([assignment(spec("web1", components=2)), assignment(spec("db"), 0)])
    assert sorted(got) == ["c0_db", "c0_web1", "c1_web1"]
    w = got["c1_web1"]
    assert (w.app, w.instance, w.component) == ("web1", 1, "c1")
    assert w.ports == (PublishedPort(31001, 8080, Protocol.BOTH),)
    assert w.ports[0].transports == ("tcp", "udp")
    assert got["c0_web1"].ports == (PublishedPort(31000, 8080, Protocol.TCP),)
    assert w.command == ("python3", "-m", "http.server", "$PORT")
    assert desired_workloads([{"app": "gone", "instance": 0, "spec": None}]) == {}


def test_each_component_knows_every_component_of_its_own_instance_only() -> None:
    got = desired_workloads([assignment(spec("web1", components=2)), assignment(spec("db"), 0)])
    c0, c1 = PublishedPort(31000, 8080, Protocol.TCP), PublishedPort(31001, 8080, Protocol.BOTH)
    both = (("c0", (c0,)), ("c1", (c1,)))
    assert got["c0_web1"].components == got["c1_web1"].components == both
    assert got["c0_db"].components == (("c0", (c0,)),)  # not web1's components


def test_a_component_added_by_an_update_restarts_the_others_with_its_address() -> None:
    one = desired_workloads([assignment(spec(components=1))])["c0_web1"]
    two = desired_workloads([assignment(spec(components=2))])["c0_web1"]
    assert one.fingerprint != two.fingerprint


def test_a_spec_change_changes_the_fingerprint() -> None:
    a = desired_workloads([assignment(spec(env="A=1"))])["c0_web1"]
    b = desired_workloads([assignment(spec(env="A=2"))])["c0_web1"]
    assert a.fingerprint != b.fingerprint
    assert a.fingerprint == replace(a).fingerprint


def workloads(*names: str) -> dict[str, Workload]:
    return {k: v for n in names for k, v in desired_workloads([assignment(spec(n))]).items()}


def test_plan_starts_missing_stops_unassigned_and_replaces_updated() -> None:
    desired = workloads("a", "b", "c")
    updated = replace(desired["c0_c"], environment=("A=9",))
    observed = {
        "c0_a": Observed("c0_a", desired["c0_a"].fingerprint, True),  # fine
        "c0_c": Observed("c0_c", updated.fingerprint, True),  # old spec
        "c0_gone": Observed("c0_gone", "x", True),  # no longer assigned
    }
    p = plan(desired, observed, Restarts(), now=100.0)
    assert p.stop == (("c0_c", True), ("c0_gone", False))  # updates keep their data
    assert [w.key for w in p.start] == ["c0_b", "c0_c"]


def test_crashes_back_off_exponentially_and_a_stable_run_forgives_them() -> None:
    desired = workloads("a")
    fp = desired["c0_a"].fingerprint
    restarts = Restarts()
    now = 0.0
    waits = []
    for _ in range(9):
        p = plan(desired, {"c0_a": Observed("c0_a", fp, False, exit_code=1)}, restarts, now)
        assert p.stop == (("c0_a", True),) and p.start == ()  # not restarted at once
        waits.append(restarts.not_before["c0_a"] - now)
        assert plan(desired, {}, restarts, now + waits[-1] - 0.01).start == ()
        assert plan(desired, {}, restarts, now + waits[-1]).start == (desired["c0_a"],)
        restarts.started("c0_a", now + waits[-1])
        now += waits[-1] + 1
    assert waits[:4] == [1.0, 2.0, 4.0, 8.0] and waits[-1] == BACKOFF_MAX_S
    assert "exited with 1" in restarts.last_error["c0_a"]
    running = {"c0_a": Observed("c0_a", fp, True)}
    plan(desired, running, restarts, now + STABLE_S)
    assert "c0_a" not in restarts.count


def test_plan_never_starts_a_held_workload_and_keeps_its_data() -> None:
    """A workload the disk watchdog holds stays stopped, data kept, while assigned."""
    desired = workloads("a", "b")
    observed = {"c0_a": Observed("c0_a", desired["c0_a"].fingerprint, True)}
    p = plan(desired, observed, Restarts(), now=100.0, held={"c0_a", "c0_b"})
    assert p.stop == (("c0_a", True),)  # still running (a restart raced it): stopped
    assert p.start == ()

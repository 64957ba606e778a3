"""The Docker runtime's create body, checked without an engine: every limit from the spec.

tests/containers/test_docker_runtime.py checks the same against a real engine."""

from __future__ import annotations

from fluxchain.agent.docker import (
    APP_CAPABILITIES,
    LABEL,
    PIDS_LIMIT,
    container_config,
    network_config,
    storage_quota_supported,
)
from fluxchain.agent.runtime import component_env
from fluxchain.agent.workloads import PublishedPort, Workload
from fluxchain.core.appspec import Protocol
from tests.agent.component_app import two_components

MIB = 1024 * 1024


def web(**changes: object) -> Workload:
    base = {
        "key": "web_app1",
        "app": "app1",
        "instance": 0,
        "component": "web",
        "image": "nginx:1.27",
        "command": ("nginx", "-g", "daemon off;"),
        "environment": ("GREETING=hi",),
        "ports": (PublishedPort(31080, 80, Protocol.TCP),),
        "data_path": "/data",
        "cpu_tenths": 15,
        "ram_mb": 768,
        "disk_gb": 7,
    }
    base.update(changes)
    return Workload(**base)  # type: ignore[arg-type]


def test_the_container_create_body_carries_every_limit_from_the_spec() -> None:
    w = web()
    body = container_config(w, "n1", "127.0.1.1", "flux-n1-web_app1", storage_quota=True)
    host = body["HostConfig"]
    assert host["NanoCpus"] == 1_500_000_000  # 1.5 cores
    assert host["Memory"] == host["MemorySwap"] == 768 * MIB  # no swap on top
    assert host["PidsLimit"] == PIDS_LIMIT
    assert host["SecurityOpt"] == ["no-new-privileges"]
    assert host["CapDrop"] == ["ALL"]
    assert sorted(host["CapAdd"]) == sorted(APP_CAPABILITIES)
    assert not {"NET_RAW", "MKNOD", "SYS_ADMIN", "SETPCAP", "SETFCAP"} & set(host["CapAdd"])
    assert host["Ulimits"] == [{"Name": "core", "Soft": 0, "Hard": 0}]
    assert host["StorageOpt"] == {"size": "7G"}
    assert host["RestartPolicy"] == {"Name": "no"}
    assert host["PortBindings"] == {"80/tcp": [{"HostIp": "127.0.1.1", "HostPort": "31080"}]}
    assert host["Mounts"] == [{"Type": "volume", "Source": "flux-n1-web_app1", "Target": "/data"}]
    assert "Privileged" not in host
    assert host["NetworkMode"] == "flux-n1-app1"  # its app's network: never the host's
    assert body["Labels"][f"{LABEL}.fingerprint"] == w.fingerprint
    assert body["Cmd"] == ["nginx", "-g", "daemon off;"]

    # Other specs, other limits; no quota option where the engine cannot apply one.
    small = container_config(
        web(cpu_tenths=1, ram_mb=64, disk_gb=1, data_path=""),
        "n1",
        "0.0.0.0",
        "v",
        storage_quota=False,
    )["HostConfig"]
    assert (small["NanoCpus"], small["Memory"], small["MemorySwap"]) == (
        100_000_000,
        64 * MIB,
        64 * MIB,
    )
    assert "StorageOpt" not in small and small["Mounts"] == []


def test_udp_and_both_ports_are_published_per_protocol() -> None:
    ports = (
        PublishedPort(31053, 53, Protocol.UDP),
        PublishedPort(31054, 5353, Protocol.BOTH),
        PublishedPort(31080, 80, Protocol.TCP),
        PublishedPort(31081, 80, Protocol.TCP),  # two host ports to one container port
    )
    body = container_config(web(ports=ports), "n1", "127.0.1.1", "v", storage_quota=False)

    def bound(*hosts: int) -> list[dict[str, str]]:
        return [{"HostIp": "127.0.1.1", "HostPort": str(h)} for h in hosts]

    assert body["HostConfig"]["PortBindings"] == {
        "53/udp": bound(31053),
        "5353/tcp": bound(31054),
        "5353/udp": bound(31054),
        "80/tcp": bound(31080, 31081),
    }
    assert set(body["ExposedPorts"]) == {"53/udp", "5353/tcp", "5353/udp", "80/tcp"}


def test_storage_quota_support_is_read_from_the_engine_info() -> None:
    def info(driver: str, backing: str) -> dict[str, object]:
        return {"Driver": driver, "DriverStatus": [["Backing Filesystem", backing]]}

    assert storage_quota_supported(info("overlay2", "xfs"))
    assert not storage_quota_supported(info("overlay2", "extfs"))
    assert storage_quota_supported(info("btrfs", "btrfs"))
    assert storage_quota_supported(info("zfs", "zfs"))
    assert not storage_quota_supported(info("vfs", "extfs"))
    assert not storage_quota_supported({})


def test_an_apps_components_share_its_network_and_answer_to_their_names() -> None:
    web, db = two_components(
        "shop", image="shop:1", web_ports=((31080, 8080),), db_ports=((31306, 3306),)
    )
    bodies = [container_config(w, "n1", "127.0.1.1", w.key, storage_quota=False) for w in (web, db)]
    for w, body in zip((web, db), bodies, strict=True):
        assert body["HostConfig"]["NetworkMode"] == "flux-n1-shop"
        assert body["NetworkingConfig"] == {
            "EndpointsConfig": {"flux-n1-shop": {"Aliases": [w.component]}}
        }
    net = network_config("n1", "shop")
    assert net["Name"] == "flux-n1-shop" and net["Driver"] == "bridge"
    assert net["Labels"] == {f"{LABEL}.node": "n1", f"{LABEL}.app": "shop"}
    # by name, at the container port: what the process runtime gives at the host port
    env = dict(e.split("=", 1) for e in bodies[0]["Env"])
    assert (env["FLUX_DB_HOST"], env["FLUX_DB_PORT"], env["FLUX_DB_ADDR"]) == (
        "db",
        "3306",
        "db:3306",
    )
    assert env["FLUX_DB_PORT_3306"] == "3306" and env["FLUX_WEB_ADDR"] == "web:8080"
    process = component_env(web, "127.0.1.1")
    assert (process["FLUX_DB_HOST"], process["FLUX_DB_PORT"]) == ("127.0.1.1", "31306")
    assert sorted(process) == sorted(k for k in env if k.startswith(("FLUX_DB_", "FLUX_WEB_")))


def test_component_variable_names_upper_case_the_name_and_replace_dashes() -> None:
    w = web(components=(("my-db", ()), ("web", (PublishedPort(31080, 80, Protocol.TCP),))))
    env = component_env(w, None)
    assert env == {
        "FLUX_MY_DB_HOST": "my-db",  # no ports: a name to resolve, no port to guess
        "FLUX_WEB_HOST": "web",
        "FLUX_WEB_PORT": "80",
        "FLUX_WEB_ADDR": "web:80",
        "FLUX_WEB_PORT_80": "80",
    }

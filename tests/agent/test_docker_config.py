"""The Docker runtime's create body, checked without an engine: every limit from the spec.

tests/containers/test_docker_runtime.py checks the same against a real engine."""

from __future__ import annotations

from fluxchain.agent.docker import (
    APP_CAPABILITIES,
    LABEL,
    PIDS_LIMIT,
    container_config,
    storage_quota_supported,
)
from fluxchain.agent.workloads import PublishedPort, Workload
from fluxchain.core.appspec import Protocol

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
    assert "Privileged" not in host and "NetworkMode" not in host  # never the host's
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

"""`flux-wallet app validate` on ports and domains, offline from the genesis file: both port
forms are accepted, and each mistake is named with its field path and problem code."""

from __future__ import annotations

from pathlib import Path

from fluxchain.core.crypto import encode_address
from fluxchain.genesis_builder import devnet_params
from tests.support.ports import closed_port
from tests.wallet.conftest import Cli

GENESIS = Path(__file__).resolve().parents[2] / "genesis" / "devnet.json"
OWNER = encode_address(bytes(range(20)), devnet_params().address_hrp)
SPEC = """\
name: blog
owner: {owner}
instances: 3
expire: 5000
components:
  - name: web
    image: nginx:1.27
{ports}
    cpu: 0.5
    ram_mb: 256
    disk_gb: 1
"""


def validate(tmp_path: Path, ports: str, expect: int) -> str:
    spec = tmp_path / "blog.yaml"
    spec.write_text(SPEC.format(owner=OWNER, ports=ports), encoding="utf-8")
    # offline: no node answers, the wallet has the genesis file
    cli = Cli(
        tmp_path / "wallet",
        f"http://127.0.0.1:{closed_port()}",
        extra_env={"FLUX_TRUST_GENESIS": str(GENESIS)},
    )
    proc = cli.run("app", "validate", str(spec), "--genesis", str(GENESIS), expect=expect)
    return proc.stderr


def test_both_port_forms_pass_validate(tmp_path: Path) -> None:
    validate(tmp_path, "    ports: [31000]\n    container_ports: [80]", expect=0)
    per_port = """\
    ports:
      - {host: 8080, container: 80, domains: [blog.example.com]}
      - {host: 31053, container: 53, protocol: udp}"""
    validate(tmp_path, per_port, expect=0)


def test_validate_explains_port_and_domain_mistakes(tmp_path: Path) -> None:
    ports = """\
    ports:
      - {host: 26700, container: 80}
      - {host: 8080, container: 80, protocol: udp, domains: [Blog.Example.com.]}"""
    stderr = validate(tmp_path, ports, expect=5)
    lines = [ln for ln in stderr.splitlines() if ln.startswith("error [invalid_spec]")]
    assert any(
        "components[0].ports[0].host: 26700 is reserved for the node's p2p" in ln
        and "[out_of_range]" in ln
        for ln in lines
    ), stderr
    assert any("components[0].ports[1].domains:" in ln and "[mismatch]" in ln for ln in lines), (
        stderr
    )
    assert any(
        "components[0].ports[1].domains[0]: 'Blog.Example.com.' ends with a dot" in ln
        for ln in lines
    ), stderr

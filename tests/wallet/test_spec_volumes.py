"""`flux-wallet app validate` on volumes, offline from the genesis file: a replicated volume
passes, a mount escaping its directory or overlapping data_path is named with its path."""

from __future__ import annotations

from pathlib import Path

from tests.wallet.test_spec_ports import validate

PORTS = "    ports: [31000]\n    container_ports: [80]\n"


def test_a_replicated_volume_passes_validate(tmp_path: Path) -> None:
    volumes = (
        "    volumes:\n      - {mount: /var/lib/kv, mode: replicated}\n      - {mount: /tmp/c}"
    )
    validate(tmp_path, PORTS + volumes, expect=0)


def test_validate_names_volume_mistakes(tmp_path: Path) -> None:
    volumes = """\
    volumes:
      - {mount: /a/../../etc, mode: replicated}
      - {mount: /data/inner}
      - {mount: /kv, mode: mirrored}"""
    stderr = validate(tmp_path, PORTS + volumes, expect=5)
    lines = [ln for ln in stderr.splitlines() if ln.startswith("error [invalid_spec]")]
    expected = [
        ("components[0].volumes[0].mount:", "[bad_format]"),
        ("components[0].volumes[1].mount: '/data/inner' overlaps '/data'", "[duplicate]"),
        ("components[0].volumes[2].mode: 'mirrored'", "[bad_format]"),
    ]
    for where, code in expected:
        assert any(where in ln and code in ln for ln in lines), stderr

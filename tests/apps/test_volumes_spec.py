"""A component's volumes in the spec: the two forms, and the rules against path escapes."""

from __future__ import annotations

import pytest

from fluxchain.core.appspec import (
    MAX_VOLUMES,
    AppSpec,
    Problem,
    Volume,
    VolumeMode,
    validate,
    validate_json,
)
from fluxchain.core.encoding import pack, unpack
from tests.support.state import component, make_params, spec

OWNER = bytes(range(20))
PARAMS = make_params()
REPLICATED = Volume("/var/lib/kv", VolumeMode.REPLICATED)


def problems(*volumes: Volume, data_path: str = "/data") -> set[tuple[str, Problem]]:
    s = spec(OWNER, components=(component(data_path=data_path, volumes=volumes),))
    return {(p.path, p.code) for p in validate(s, PARAMS)}


def test_volumes_round_trip_in_both_forms() -> None:
    s = spec(
        OWNER,
        components=(
            component(
                volumes=(REPLICATED, Volume("/cache")),
            ),
        ),
    )
    assert validate(s, PARAMS) == []
    assert AppSpec.from_fields(unpack(pack(s.to_fields()))) == s
    shown = s.to_json("tflux")
    assert shown["components"][0]["volumes"] == [
        {"mount": "/var/lib/kv", "mode": "replicated"},
        {"mount": "/cache", "mode": "local"},
    ]
    assert AppSpec.from_json(shown, "tflux") == s
    assert s.components[0].replicated == (REPLICATED,)


def test_a_spec_without_volumes_keeps_data_path_as_its_local_volume() -> None:
    s = spec(OWNER)
    assert s.components[0].volumes == () and s.components[0].data_path == "/data"
    raw = s.to_json("tflux")
    del raw["components"][0]["volumes"]
    assert AppSpec.from_json(raw, "tflux") == s


@pytest.mark.parametrize(
    ("mount", "code"),
    [
        ("/a/../../etc", Problem.BAD_FORMAT),
        ("../escape", Problem.BAD_FORMAT),
        ("/", Problem.BAD_FORMAT),
        ("relative", Problem.BAD_FORMAT),
        ("/" + "v" * 200, Problem.TOO_LONG),
        ("/vo\u200blume", Problem.INVISIBLE_CHARACTER),
    ],
)
def test_volume_mount_path_escape_is_refused(mount: str, code: Problem) -> None:
    assert problems(Volume(mount, VolumeMode.REPLICATED)) == {
        ("components[0].volumes[0].mount", code)
    }


def test_overlapping_volumes_are_refused() -> None:
    # a replicated volume inside the local data_path (or the reverse) would mix their data
    assert problems(Volume("/data/kv", VolumeMode.REPLICATED)) == {
        ("components[0].volumes[0].mount", Problem.DUPLICATE)
    }
    assert problems(Volume("/srv"), Volume("/srv/", VolumeMode.REPLICATED), data_path="/d") == {
        ("components[0].volumes[1].mount", Problem.DUPLICATE)
    }
    assert problems(Volume("/srv/a"), Volume("/srv/ab")) == set()


def test_volumes_nesting_under_another_spelling_are_refused() -> None:
    # `/./a` and `/a/b` are one directory inside another on every runtime's host side
    assert problems(Volume("/./a"), Volume("/a/b", VolumeMode.REPLICATED)) == {
        ("components[0].volumes[1].mount", Problem.DUPLICATE)
    }
    assert problems(Volume("/x//kv"), data_path="/x/./kv/") == {
        ("components[0].volumes[0].mount", Problem.DUPLICATE)
    }
    assert problems(Volume("/./")) == {("components[0].volumes[0].mount", Problem.BAD_FORMAT)}


def test_too_many_volumes_are_refused() -> None:
    many = tuple(Volume(f"/v{i}") for i in range(MAX_VOLUMES + 1))
    assert ("components[0].volumes", Problem.TOO_MANY) in problems(*many)


def test_volume_form_errors_are_named() -> None:
    raw = spec(OWNER).to_json("tflux")
    raw["components"][0]["volumes"] = [
        {"mount": "/kv", "mode": "mirrored"},
        "/x",
        {"mode": "local"},
    ]
    found = {(p.path, p.code) for p in validate_json(raw, PARAMS, "tflux")}
    assert found == {
        ("components[0].volumes[0].mode", Problem.BAD_FORMAT),
        ("components[0].volumes[1]", Problem.WRONG_TYPE),
        ("components[0].volumes[2].mount", Problem.MISSING),
    }

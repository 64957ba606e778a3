"""Sealed secrets in the agent's workloads: the values reach the runtime's environment and
the registry pull, and nowhere the agent shows or stores (repr, fingerprint)."""

from __future__ import annotations

from dataclasses import replace

from fluxchain.agent.docker import registry_auth_for
from fluxchain.agent.runtime import workload_env
from fluxchain.agent.workloads import Workload, desired_workloads
from tests.agent.test_workloads import assignment, spec

PASSWORD = "hunter2-correct-horse"


def web() -> Workload:
    return desired_workloads([assignment(spec("web1"))])["c0_web1"]


def test_a_secret_reaches_the_environment_but_not_the_fingerprint_or_repr() -> None:
    plain = web()
    sealed = replace(plain, secret_env=(("DB_PASSWORD", PASSWORD),), secrets_id="k1")
    env = workload_env(sealed, "127.0.0.1", 31000, components_host=None)
    assert env["DB_PASSWORD"] == PASSWORD and env["A"] == "1"
    assert PASSWORD not in repr(sealed)
    # the fingerprint is kept on disk by the runtimes: it names the ciphertexts, not values
    other_value = replace(sealed, secret_env=(("DB_PASSWORD", "another"),))
    assert other_value.fingerprint == sealed.fingerprint
    assert replace(sealed, secrets_id="k2").fingerprint != sealed.fingerprint
    assert plain.fingerprint == replace(plain, secrets_problem="waiting").fingerprint


def test_a_workload_without_secrets_keeps_its_fingerprint() -> None:
    """Agents upgraded to this version do not restart the workloads of apps without
    secrets: the new fields are not in their fingerprint."""
    w = web()
    assert w.fingerprint == replace(w, secret_env=(), registry_auth=()).fingerprint


def test_registry_login_goes_to_the_pull_of_an_image_in_that_registry() -> None:
    w = replace(
        web(),
        image="registry.example.com/team/api:1.2",
        registry_auth=(("registry.example.com", "deploy:tok:en"),),
    )
    assert registry_auth_for(w) == {
        "username": "deploy",
        "password": "tok:en",
        "serveraddress": "registry.example.com",
    }
    assert registry_auth_for(replace(w, image="ghcr.io/other/api:1")) is None
    assert PASSWORD not in repr(w) and "tok:en" not in repr(w)

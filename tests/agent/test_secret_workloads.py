"""Sealed secrets in the agent's workloads: the values reach the runtime's environment and
the registry pull, and nowhere the agent shows or stores (repr, fingerprint)."""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import replace
from pathlib import Path
from typing import Any

from fluxchain.agent.agent import Agent
from fluxchain.agent.docker import registry_auth_for
from fluxchain.agent.process import ProcessRuntime
from fluxchain.agent.runtime import workload_env
from fluxchain.agent.workloads import Workload, desired_workloads
from fluxchain.core import apps, secrets
from fluxchain.core.appspec import AppSpec
from fluxchain.core.sealing import new_key_salt
from fluxchain.core.tx import SecretKind
from tests.agent.test_workloads import assignment, spec
from tests.apps.test_apps import OWNER_KEY
from tests.apps.test_secrets import agent_view, chain_with_app, hosts_of, keys_by_node
from tests.support.wait import wait_until_async

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


class _SecretsNodeApi:
    """The agent's own node: its assignments, the sealed secrets view, its node id."""

    def __init__(self, node_id: bytes, views: dict[str, dict[str, Any]]) -> None:
        self.id, self.views = node_id, views
        self.assigned: list[dict[str, object]] = []

    async def assignments(self, node_key: str) -> tuple[int, list[dict[str, object]]]:
        return 9, self.assigned

    async def app_secrets(self, name: str) -> dict[str, Any] | None:
        return self.views.get(name)

    async def node_id(self, node_key: str) -> bytes:
        return self.id


def _sleeper(s: AppSpec) -> dict[str, object]:
    """Instance 0 of `s` whose every component runs `sleep 30` (the process runtime)."""
    comps = tuple(replace(c, command=("sleep", "30"), ports=()) for c in s.components)
    return {"app": s.name, "instance": 0, "spec": replace(s, components=comps).to_json("tflux")}


def test_a_secret_value_with_a_nul_byte_kills_the_agents_converge_loop(tmp_path: Path) -> None:
    """Attack: an app owner seals a secret value holding a NUL byte (the chain sees only
    ciphertext, the agent only checks the value is UTF-8). On each host of the app the
    process runtime passes it in the environment, `subprocess.Popen` raises ValueError
    ("embedded null byte"), which is not a WorkloadError: it leaves `converge` and ends
    the agent's converge task for good, while its report loop goes on telling the node
    all is well. No app on the host is started, restarted or moved there again. Should:
    such a value is refused where the agent opens the secrets (the component held,
    reported `secret_unsealable` with the reason), and every other app goes on."""
    chain, _ = chain_with_app()
    host = hosts_of(chain)[0]
    keys = keys_by_node(chain)
    values = {("web", SecretKind.ENV, "DB_PASSWORD"): b"pass\x00word"}
    payload = secrets.seal_secrets(
        OWNER_KEY,
        chain.params.chain_id,
        "myapp",
        values,
        {h: keys[h].public_key for h in hosts_of(chain)},
        new_key_salt(),
    )
    chain.apply(secrets.process_app_secrets, chain.secrets_tx(OWNER_KEY, payload))
    app = apps.get_app(chain.state, "myapp")
    assert app is not None
    api: Any = _SecretsNodeApi(host, {"myapp": agent_view(chain)})  # the NodeApi calls made
    api.assigned = [_sleeper(app.spec), _sleeper(spec("theirs"))]
    runtime = ProcessRuntime(tmp_path / "process", "127.0.0.1")
    (tmp_path / "process").mkdir()
    agent = Agent(
        "http://127.0.0.1:1",
        "t",
        keys[host].public_key.hex(),
        runtime,
        tmp_path / "state.json",
        "127.0.0.1",
        tick_s=0.05,
        node_secret=keys[host].secret,
    )

    async def running(key: str) -> bool:
        seen = (await runtime.observe()).get(key)
        return seen is not None and seen.running

    async def scenario() -> None:
        converging = asyncio.create_task(agent._converge_loop(api))
        try:
            await wait_until_async(lambda: running("c0_theirs"), 10, "the other app to start")
            # an app placed on this host afterwards: the agent's next pass starts it
            api.assigned = [*api.assigned, _sleeper(spec("later"))]
            agent._wake.set()
            await wait_until_async(lambda: running("c0_later"), 10, "an app placed later")
            assert not await running("web_myapp")
        finally:
            converging.cancel()
            with contextlib.suppress(asyncio.CancelledError, ValueError):
                await converging
            for key in ("c0_theirs", "c0_later", "web_myapp"):
                await runtime.remove(key, keep_data=False)

    asyncio.run(scenario())

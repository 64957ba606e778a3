"""Sealed secrets on the Docker runtime against a real engine: the value the agent opened
reaches the container's environment, and neither the container's labels nor the agent's
files hold it. Run by `make test-containers` (the image it builds)."""

from __future__ import annotations

import asyncio
import secrets as random_tokens
from dataclasses import replace
from pathlib import Path

from fluxchain.agent.docker import DockerRuntime
from tests.agent.test_devnet_agents import answers
from tests.containers.test_docker_runtime import HOST, URL, docker, port, tag, web
from tests.support.wait import wait_until_async

__all__ = ["port", "tag"]  # the fixtures this module uses


def test_a_secret_reaches_the_containers_environment_and_no_label(
    tag: str, tmp_path: Path, port: int
) -> None:
    token = random_tokens.token_hex(16)
    print(f"secret token {token}")
    w = replace(web(port), secret_env=(("DB_PASSWORD", token),), secrets_id="check-1")
    name = f"flux-{tag}-{w.key}"

    async def scenario() -> None:
        runtime = DockerRuntime(URL, tag, HOST, tmp_path)
        try:
            await runtime.start(w)
            await wait_until_async(lambda: answers(HOST, port), 30, "the app answers")
            assert docker("exec", name, "printenv", "DB_PASSWORD") == token
            labels = docker("inspect", name, "--format", "{{json .Config.Labels}}")
            assert token not in labels
            seen = await runtime.observe()
            assert seen[w.key].fingerprint == w.fingerprint  # adopted without the value
        finally:
            await runtime.remove(w.key, keep_data=False)
            await runtime.close()

    asyncio.run(scenario())
    stored = b"".join(p.read_bytes() for p in tmp_path.rglob("*") if p.is_file())
    assert token.encode() not in stored

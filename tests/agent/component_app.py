"""A two-component app for the component-networking tests, shaped like docs/apps.md's
WordPress + MySQL example: a `web` component that answers HTTP by asking a `db`
component over TCP, found by name.

`db` listens on $HOST:$PORT (3306 when it publishes no port, as MySQL does inside its
container) and answers each connection with one line. `web` serves HTTP on $HOST:$PORT;
each request opens a connection to the database — `DB_HOST`/`DB_PORT` from the spec's
environment when set (WordPress's `WORDPRESS_DB_HOST=db`), else the runtime's
`FLUX_DB_HOST`/`FLUX_DB_PORT` — and returns what it read, with the variables it used.
Both run on the standard library only, so any image with python3 runs them, and serve
each connection on a thread of its own: one slow request does not hold up the next.
"""

from __future__ import annotations

import sys
from typing import Final

from fluxchain.agent.workloads import PublishedPort, Workload
from fluxchain.core.appspec import Protocol

DB_REPLY: Final = "db-ok"
DB_DEFAULT_PORT: Final = 3306

DB_SCRIPT: Final = """\
import os, socketserver
class Reply(socketserver.BaseRequestHandler):
    def handle(self):
        self.request.sendall(b"db-ok\\n")
Server = socketserver.ThreadingTCPServer
Server.allow_reuse_address = True
server = Server((os.environ["HOST"], int(os.environ.get("PORT", "3306"))), Reply)
server.serve_forever()
"""

WEB_SCRIPT: Final = """\
import http.server, json, os, socket
class Page(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        host = os.environ.get("DB_HOST") or os.environ["FLUX_DB_HOST"]
        port = int(os.environ.get("DB_PORT") or os.environ.get("FLUX_DB_PORT") or 3306)
        try:
            with socket.create_connection((host, port), timeout=3) as db:
                answer = db.makefile().readline().strip()
        except OSError as exc:
            answer = "error: " + str(exc)
        flux = {k: v for k, v in os.environ.items() if k.startswith("FLUX_DB")}
        body = json.dumps({"db": answer, "host": host, "port": port, "env": flux}).encode()
        self.send_response(200 if answer == "db-ok" else 502)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
http.server.ThreadingHTTPServer((os.environ["HOST"], int(os.environ["PORT"])), Page).serve_forever()
"""


def two_components(
    app: str,
    *,
    python: str = sys.executable,
    image: str = "ignored-by-the-process-runtime",
    web_ports: tuple[tuple[int, int], ...],
    db_ports: tuple[tuple[int, int], ...] = (),
    web_environment: tuple[str, ...] = (),
) -> tuple[Workload, Workload]:
    """The (web, db) workloads of one instance of `app`, as desired_workloads makes them
    (every port tcp)."""
    web, db = _tcp(web_ports), _tcp(db_ports)
    components = (("web", web), ("db", db))

    def workload(component: str, script: str, ports: tuple[PublishedPort, ...]) -> Workload:
        return Workload(
            key=f"{component}_{app}",
            app=app,
            instance=0,
            component=component,
            image=image,
            command=(python, "-c", script),
            environment=web_environment if component == "web" else (),
            ports=ports,
            data_path="",
            cpu_tenths=5,
            ram_mb=256,
            disk_gb=1,
            components=components,
        )

    return workload("web", WEB_SCRIPT, web), workload("db", DB_SCRIPT, db)


def _tcp(pairs: tuple[tuple[int, int], ...]) -> tuple[PublishedPort, ...]:
    return tuple(PublishedPort(host, container, Protocol.TCP) for host, container in pairs)

"""A small key-value service keeping its data in a replicated volume (docs/apps.md).

    python3 kv_app.py HOST PORT [DIR]

DIR (default `kv`, the volume `/kv` as the process runtime mounts it: relative to the
working directory) holds `data/<key>` files and `journal`, to which a writer thread
appends a record every 100 ms: `<seq> <unix time>`, flushed and fsynced. On start it
continues the journal it finds, so a failover shows as a jump in time, not in seq.
HTTP: GET /journal (the record count and the first and last records), GET and PUT
/k/<key>. The standard library only: any image with python3 runs it.
"""

from __future__ import annotations

import http.server
import json
import os
import sys
import threading
import time
from pathlib import Path

RECORD_EVERY_S = 0.1


def last_seq(journal: Path) -> int:
    """The last complete record's seq (a record cut by a crash is ignored)."""
    try:
        lines = journal.read_text().splitlines()
    except FileNotFoundError:
        return 0
    for line in reversed(lines):
        parts = line.split()
        if len(parts) == 2 and parts[0].isdigit():
            return int(parts[0])
    return 0


def write_records(journal: Path) -> None:
    seq = last_seq(journal)
    with journal.open("a") as out:
        while True:
            seq += 1
            out.write(f"{seq} {time.time():.3f}\n")
            out.flush()
            os.fsync(out.fileno())
            time.sleep(RECORD_EVERY_S)


def main() -> None:
    host, port = sys.argv[1], int(sys.argv[2])
    root = Path(sys.argv[3] if len(sys.argv) > 3 else "kv")
    (root / "data").mkdir(parents=True, exist_ok=True)
    journal = root / "journal"
    threading.Thread(target=write_records, args=(journal,), daemon=True).start()

    class Handler(http.server.BaseHTTPRequestHandler):
        def _key(self) -> Path | None:
            name = self.path.removeprefix("/k/")
            ok = self.path.startswith("/k/") and name.isalnum()
            return root / "data" / name if ok else None

        def _send(self, status: int, body: bytes) -> None:
            self.send_response(status)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def do_GET(self) -> None:
            if self.path == "/journal":
                lines = journal.read_text().splitlines() if journal.exists() else []
                body = {"records": len(lines), "first": lines[:1], "last": lines[-1:]}
                self._send(200, json.dumps(body).encode())
                return
            key = self._key()
            if key is None or not key.is_file():
                self._send(404, b"no such key\n")
                return
            self._send(200, key.read_bytes())

        def do_PUT(self) -> None:
            key = self._key()
            if key is None:
                self._send(400, b"keys are letters and digits\n")
                return
            key.write_bytes(self.rfile.read(int(self.headers.get("Content-Length", "0"))))
            self._send(204, b"")

        def log_message(self, format: str, *args: object) -> None:
            pass  # quiet: the agent keeps this process's output as its log

    http.server.ThreadingHTTPServer.allow_reuse_address = True
    http.server.ThreadingHTTPServer((host, port), Handler).serve_forever()


if __name__ == "__main__":
    main()

"""The devnet's process supervisor: a dead node does not take the others down.

`fluxchain devnet up` runs every node's `fluxchain run` and `fluxchain agent` (and any
other program added to the devnet, such as a gateway) under one `Supervisor`. When a
process dies (a crash, an operator's `kill -9`), the supervisor says which one and how
(exit status or signal), keeps the others running, and waits to be told to start it
again, like CometBFT's e2e runner which kills a node and later restarts it while the
rest of the network goes on. Ctrl-C or SIGTERM stops every process it runs, restarted
ones included.

Other terminals talk to it over a unix socket in the devnet home (`control.sock`, mode
0600: only the devnet's user may kill its nodes). One request per connection, one JSON
line each way: `{"command": "start"|"stop"|"kill"|"status", "group": "node3"}` →
`{"ok": bool, "message": str, "groups": {...}}`. A group is what a user names: `node3`
is node 3's `run` and `agent` processes together.
"""

from __future__ import annotations

import contextlib
import json
import os
import select
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

CONTROL_SOCKET: Final = "control.sock"
POLL_S: Final = 0.5  # how soon a death is noticed and a request answered
STOP_GRACE_S: Final = 10.0  # SIGTERM, then SIGKILL: a node flushes its store in far less
REQUEST_LIMIT: Final = 4096  # bytes of one control request: a command and a name
# A whole request must arrive within this: the supervisor is one thread, and a client that
# trickles its request a byte at a time must not keep it from reaping and reporting deaths.
REQUEST_DEADLINE_S: Final = 2.0
CLIENT_TIMEOUT_S: Final = 30.0  # a stop waits up to STOP_GRACE_S per process
# sun_path holds 108 bytes on Linux, its terminating NUL included.
MAX_SOCKET_PATH: Final = 107
COMMANDS: Final = ("start", "stop", "kill", "status")


class ControlError(Exception):
    """`devnet start/stop/kill` could not reach a running devnet, or it refused."""


@dataclass(frozen=True, slots=True)
class Program:
    """One process the supervisor keeps: `role` of `group` (node3's "run" or "agent")."""

    group: str
    role: str
    argv: tuple[str, ...]
    log: Path


def describe_exit(returncode: int) -> str:
    """How a process ended, in the words of a shell: a signal by name, or an exit status."""
    if returncode < 0:
        try:
            name = signal.Signals(-returncode).name
        except ValueError:
            name = f"signal {-returncode}"
        return f"killed by {name}"
    return f"exited with status {returncode}"


def start_hint(group: str, root: Path) -> str:
    """The command that starts `group` of the devnet in `root` again."""
    return f"fluxchain devnet start {group} --home {root}"


class Supervisor:
    """Starts `programs`, reports deaths, obeys control requests until told to stop."""

    def __init__(
        self,
        root: Path,
        programs: Sequence[Program],
        *,
        say: Callable[[str], None] = print,
        on_tick: Callable[[Supervisor], None] | None = None,
    ) -> None:
        self.root, self.programs, self.say, self.on_tick = root, tuple(programs), say, on_tick
        self.groups = tuple(dict.fromkeys(p.group for p in programs))
        self.running: dict[Program, subprocess.Popen[bytes]] = {}
        self.stopping = False
        self.told: dict[str, str] = {}  # group -> the state last reported since its start
        self._listener: socket.socket | None = None

    # --- processes ------------------------------------------------------------------

    def _spawn(self, program: Program) -> None:
        with program.log.open("ab") as out:
            self.running[program] = subprocess.Popen(
                list(program.argv),
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # Ctrl-C in the terminal reaches the supervisor only
            )

    def pid(self, program: Program) -> int | None:
        """The pid of `program` while it runs."""
        proc = self.running.get(program)
        return proc.pid if proc is not None and proc.poll() is None else None

    def _members(self, group: str) -> list[Program]:
        return [p for p in self.programs if p.group == group]

    def reap(self) -> None:
        """Report each process that died since the last look, once; the others run on."""
        dead_groups = []
        for program, proc in list(self.running.items()):
            if proc.poll() is None:
                continue
            del self.running[program]
            self.say(
                f"{program.group} {program.role} (pid {proc.pid}) {describe_exit(proc.returncode)}"
                f"; its log: {program.log}"
            )
            dead_groups.append(program.group)
        for group in dict.fromkeys(dead_groups):
            alive = [p.role for p in self._members(group) if p in self.running]
            state = f"partly down ({', '.join(alive)} still running)" if alive else "down"
            if self.told.get(group) == state:
                continue
            self.told[group] = state
            self.say(
                f"{group} is {state}; the others keep running. Start it again with: "
                f"{start_hint(group, self.root)}"
            )

    def start_group(self, group: str) -> str:
        self.told.pop(group, None)
        started = []
        for program in self._members(group):
            if program not in self.running:
                self._spawn(program)
                started.append(f"{program.role} (pid {self.running[program].pid})")
        if not started:
            return f"{group} is already running"
        message = f"started {group}: " + ", ".join(started)
        self.say(message)
        return message

    def end_group(self, group: str, *, force: bool) -> str:
        """SIGKILL (force) or stop gracefully every running process of `group`."""
        procs = [(p, self.running.pop(p)) for p in self._members(group) if p in self.running]
        if not procs:
            return f"{group} is not running"
        stop([proc for _, proc in procs], timeout=0.0 if force else STOP_GRACE_S, force=force)
        how = "killed" if force else "stopped"
        message = f"{how} {group}: " + ", ".join(
            f"{p.role} (pid {proc.pid}, {describe_exit(proc.returncode)})" for p, proc in procs
        )
        self.say(f"{message}. Start it again with: {start_hint(group, self.root)}")
        return message

    def status(self) -> dict[str, dict[str, int | None]]:
        """Every group's processes and their pids (None: not running)."""
        return {g: {p.role: self.pid(p) for p in self._members(g)} for g in self.groups}

    # --- control socket -------------------------------------------------------------

    def _listen(self) -> None:
        path = self.root / CONTROL_SOCKET
        if len(os.fsencode(path)) > MAX_SOCKET_PATH:
            self.say(
                f"no control socket: {path} is longer than a unix socket path may be; "
                "`fluxchain devnet start/stop` cannot reach this devnet (use a shorter --home)"
            )
            return
        if path.exists() or path.is_symlink():
            if control_reachable(self.root):
                raise ControlError(f"another devnet supervisor already runs in {self.root}")
            path.unlink()  # left by a supervisor that was killed
        listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        old_umask = os.umask(0o177)  # the socket is created 0600: the devnet's user only
        try:
            listener.bind(str(path))
        finally:
            os.umask(old_umask)
        listener.listen(8)
        listener.setblocking(False)
        self._listener = listener

    def _serve_one(self) -> None:
        assert self._listener is not None
        try:
            conn, _ = self._listener.accept()
        except BlockingIOError:
            return
        with conn:
            try:
                request = _read_line(conn, time.monotonic() + REQUEST_DEADLINE_S)
                reply = self.handle(json.loads(request))
            except (OSError, ValueError) as exc:
                reply = {"ok": False, "message": f"bad control request: {exc}"}
            with contextlib.suppress(OSError):
                conn.sendall(json.dumps(reply).encode() + b"\n")

    def handle(self, request: Any) -> dict[str, Any]:
        """Answer one control request (see the module docstring)."""
        if not isinstance(request, dict):
            return {"ok": False, "message": "a control request is a JSON object"}
        command, group = request.get("command"), request.get("group")
        if command not in COMMANDS:
            return {"ok": False, "message": f"unknown command {command!r}; one of {COMMANDS}"}
        if command == "status":
            return {"ok": True, "message": "ok", "groups": self.status()}
        if not isinstance(group, str) or group not in self.groups:
            known = ", ".join(self.groups)
            return {"ok": False, "message": f"no {group!r} in this devnet; it has: {known}"}
        if command == "start":
            message = self.start_group(group)
        else:
            message = self.end_group(group, force=command == "kill")
        return {"ok": True, "message": message, "groups": self.status()}

    # --- the loop -------------------------------------------------------------------

    def run(self) -> int:
        """Start every program, then supervise until SIGINT/SIGTERM; stop them all."""

        def on_signal(signum: int, frame: object) -> None:
            self.stopping = True

        signal.signal(signal.SIGINT, on_signal)
        signal.signal(signal.SIGTERM, on_signal)
        self._listen()
        try:
            for program in self.programs:
                self._spawn(program)
            while not self.stopping:
                self.reap()
                if self.on_tick is not None:
                    self.on_tick(self)
                ready = [self._listener] if self._listener is not None else []
                try:
                    readable, _, _ = select.select(ready, [], [], POLL_S)
                except InterruptedError:  # pragma: no cover - PEP 475 retries select
                    continue
                if readable:
                    self._serve_one()
        finally:
            if self._listener is not None:
                self._listener.close()
                with contextlib.suppress(FileNotFoundError):
                    (self.root / CONTROL_SOCKET).unlink()
            stop(list(self.running.values()))
            self.running.clear()
        return 0


def stop(
    processes: list[subprocess.Popen[bytes]], timeout: float = STOP_GRACE_S, *, force: bool = False
) -> None:
    """SIGTERM (SIGKILL if `force`) every process, then SIGKILL what outlives `timeout`."""
    for proc in processes:
        if proc.poll() is None:
            proc.send_signal(signal.SIGKILL if force else signal.SIGTERM)
    deadline = time.monotonic() + timeout
    for proc in processes:
        try:
            proc.wait(max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def _read_line(conn: socket.socket, deadline: float) -> bytes:
    """One request line, whole by `deadline` (TimeoutError otherwise)."""
    data = b""
    while b"\n" not in data:
        left = deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError("no whole line in time")
        conn.settimeout(left)
        chunk = conn.recv(REQUEST_LIMIT)
        if not chunk:
            break
        data += chunk
        if len(data) > REQUEST_LIMIT:
            raise ValueError(f"longer than {REQUEST_LIMIT} bytes")
    return data.split(b"\n", 1)[0]


def control_reachable(root: Path) -> bool:
    """Whether a supervisor answers on `root`'s control socket."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as client:
        try:
            client.connect(str(root / CONTROL_SOCKET))
        except OSError:
            return False
    return True


def request(root: Path, command: str, group: str | None = None) -> dict[str, Any]:
    """Send one control request to the devnet supervisor running in `root`.

    Raises ControlError with a sentence a user can act on when no devnet runs there or
    the supervisor refused the request."""
    path = root / CONTROL_SOCKET
    if not (root / "devnet.json").exists():
        raise ControlError(
            f"no devnet in {root} (start one with: fluxchain devnet up --home {root})"
        )
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as client:
        client.settimeout(CLIENT_TIMEOUT_S)
        try:
            client.connect(str(path))
            client.sendall(json.dumps({"command": command, "group": group}).encode() + b"\n")
            answer = _read_line(client, time.monotonic() + CLIENT_TIMEOUT_S)
        except (FileNotFoundError, ConnectionRefusedError):
            raise ControlError(
                f"the devnet in {root} is not running (start it with: "
                f"fluxchain devnet up --home {root})"
            ) from None
        except OSError as exc:
            raise ControlError(f"cannot talk to the devnet in {root}: {exc}") from None
    try:
        reply: dict[str, Any] = json.loads(answer)
    except ValueError:
        raise ControlError(f"the devnet in {root} gave no answer") from None
    if not reply.get("ok"):
        raise ControlError(str(reply.get("message")))
    return reply

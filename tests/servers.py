"""Servers the fault tests control: a TCP proxy that can cut a database off, and a throwaway
PostgreSQL cluster that can be restarted."""
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import threading
import time
from typing import List, Optional

import pytest


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class TcpProxy:
    """Forwards 127.0.0.1:port to a server, at most ``bytes_per_second`` towards it when given;
    :meth:`cut` drops every connection and refuses new ones (the listening socket is closed, so
    connects are reset) for a while."""

    def __init__(self, target_host: str, target_port: int, bytes_per_second: Optional[float] = None) -> None:
        self.target = (target_host, target_port)
        self.bytes_per_second = bytes_per_second
        self.port = free_port()
        self.cuts = 0
        self._lock = threading.Lock()
        self._sockets: List[socket.socket] = []
        self._listener: Optional[socket.socket] = None
        self._closed = False
        self._listen()

    def _listen(self) -> None:
        listener = socket.socket()
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", self.port))
        listener.listen(64)
        self._listener = listener
        threading.Thread(target=self._accept, args=(listener,), daemon=True).start()

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return
            try:
                server = socket.create_connection(self.target, timeout=5)
                server.settimeout(None)
            except OSError:
                client.close()
                continue
            with self._lock:
                self._sockets += [client, server]
            for source, sink, rate in ((client, server, self.bytes_per_second), (server, client, None)):
                threading.Thread(target=self._pipe, args=(source, sink, rate), daemon=True).start()

    @staticmethod
    def _pipe(source: socket.socket, sink: socket.socket, bytes_per_second: Optional[float]) -> None:
        try:
            while True:
                data = source.recv(65536)
                if not data:
                    break
                if bytes_per_second:   # a slow link: writes take long enough for a fault to land in them
                    time.sleep(len(data) / bytes_per_second)
                sink.sendall(data)
        except OSError:
            pass
        for end in (source, sink):
            try:
                end.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def cut(self, seconds: float) -> None:
        """Drop every connection and refuse new ones for ``seconds``, then listen again."""
        self.cuts += 1
        with self._lock:
            # shutdown() wakes the thread blocked in accept(), so the port is free to listen on again.
            try:
                self._listener.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            self._listener.close()
            for end in self._sockets:
                try:
                    end.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
                end.close()
            self._sockets.clear()
        time.sleep(seconds)
        if not self._closed:
            self._listen()

    def close(self) -> None:
        self._closed = True
        self._listener.close()


class ThrowawayPostgres:
    """A PostgreSQL cluster of the test's own (``initdb``/``pg_ctl``, as the ``postgres``
    user when running as root), on a free port, removed afterwards."""

    def __init__(self) -> None:
        self.initdb = shutil.which("initdb") or _pg_bin("initdb")
        self.pg_ctl = shutil.which("pg_ctl") or _pg_bin("pg_ctl")
        if not (self.initdb and self.pg_ctl):
            _unavailable("initdb/pg_ctl not found")
        self.port = free_port()
        self.directory = tempfile.mkdtemp(prefix="sinks-pg-")
        self.data = os.path.join(self.directory, "data")
        self._user = "postgres" if os.geteuid() == 0 else None
        if self._user:
            entry = pwd.getpwnam(self._user)
            os.chown(self.directory, entry.pw_uid, entry.pw_gid)
        self._run(self.initdb, "-D", self.data, "-A", "trust", "-U", "root", "--no-sync")
        self._ctl("start")

    @property
    def url(self) -> str:
        return f"postgresql+psycopg2://root@127.0.0.1:{self.port}/postgres"

    def restart(self) -> None:
        self._ctl("restart", "-m", "fast")

    def close(self) -> None:
        try:
            self._ctl("stop", "-m", "immediate")
        finally:
            shutil.rmtree(self.directory, ignore_errors=True)

    def _ctl(self, action: str, *args: str) -> None:
        options = f"-p {self.port} -k {self.directory} -c listen_addresses=127.0.0.1 -c fsync=off"
        self._run(self.pg_ctl, action, "-D", self.data, "-w", "-t", "30", "-l",
                  os.path.join(self.directory, "log"), "-o", options, *args)

    def _run(self, *command: str) -> None:
        preexec = None
        if self._user:
            entry = pwd.getpwnam(self._user)

            def preexec() -> None:
                os.setgid(entry.pw_gid)
                os.setuid(entry.pw_uid)
        subprocess.run(command, check=True, capture_output=True, preexec_fn=preexec, cwd=self.directory)


def _pg_bin(name: str) -> Optional[str]:
    root = "/usr/lib/postgresql"
    for version in sorted(os.listdir(root), reverse=True) if os.path.isdir(root) else []:
        path = os.path.join(root, version, "bin", name)
        if os.path.exists(path):
            return path
    return None


def _unavailable(reason: str) -> None:
    if os.environ.get("CI") == "true":
        pytest.fail(f"{reason}; CI=true requires it", pytrace=False)
    pytest.skip(reason)

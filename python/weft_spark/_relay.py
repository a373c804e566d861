"""Rank 0's epoch lines, live on the driver: the driver listens on a TCP port (Spark's
driver host, which every executor reaches), rank 0's task connects and sends each line weft
prints after `weft spark-task: progress `, the driver prints them as they come. Best effort:
training goes on without it if the task cannot connect.
"""

import socket
import sys
import threading

PREFIX = b"weft spark-task: progress "


class Listener:
    """The driver's end: prints the lines of connections that first send `token`."""

    def __init__(self, host, token, out=None):
        self.token = token
        self.out = out or sys.stderr
        self.sock = socket.create_server((host, 0))
        self.address = f"{host}:{self.sock.getsockname()[1]}"
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self):
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self._lines, args=(conn,), daemon=True).start()

    def _lines(self, conn):
        with conn, conn.makefile("rb") as f:
            if f.readline().strip() != self.token.encode():
                return
            for raw in f:
                self.out.write("weft: " + raw.decode("utf-8", "replace"))
                self.out.flush()

    def close(self):
        self.sock.close()


class Sender:
    """The task's end (a no-op when there is no listener or it cannot be reached)."""

    def __init__(self, address, token):
        self.sock = None
        if not address:
            return
        host, port = address.rsplit(":", 1)
        try:
            self.sock = socket.create_connection((host, int(port)), timeout=5)
            self.sock.sendall(token.encode() + b"\n")
        except OSError:
            self.sock = None

    def send(self, line):
        if self.sock is None:
            return
        try:
            self.sock.sendall(line)
        except OSError:
            self.sock = None

    def close(self):
        if self.sock is not None:
            self.sock.close()

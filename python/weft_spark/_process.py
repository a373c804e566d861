"""A weft process started by a task: its stdin takes an Arrow IPC stream, its stderr is
kept (the last lines go into the error a failure raises) and copied to the task's log.

The process ends with its task: it exits when its stdin closes (weft watches it), which
happens whenever the task's Python worker goes away, and `close` kills it otherwise.
"""

import collections
import subprocess
import sys
import threading

from ._binary import WeftSparkError


# `weft spark-task` exits with this when the spec or the rows are wrong: every attempt would
# fail the same way, so the fit is not started again (the words mark it in Spark's error).
REFUSED = 4
NOT_RETRIED = "the spec or the rows are wrong: not retried"


class NoClose:
    """A file that pyarrow may close without closing the pipe under it: after the end of
    the rows' stream, stdin stays open (its EOF tells weft the task is gone)."""

    def __init__(self, f):
        self._f = f
        self.closed = False

    def write(self, b):
        return self._f.write(b)

    def flush(self):
        self._f.flush()

    def close(self):
        self._f.flush()

    def writable(self):
        return True


class WeftProcess:
    def __init__(self, args, env, what):
        self.what = what
        self.proc = subprocess.Popen(
            args, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env
        )
        self.tail = collections.deque(maxlen=40)
        self._drain = threading.Thread(target=self._read_stderr, daemon=True)
        self._drain.start()

    def _read_stderr(self):
        for raw in self.proc.stderr:
            line = raw.decode("utf-8", "replace").rstrip("\n")
            self.tail.append(line)
            print(f"[{self.what}] {line}", file=sys.stderr, flush=True)

    @property
    def stdin(self):
        return self.proc.stdin

    @property
    def stdout(self):
        return self.proc.stdout

    def failure(self, doing):
        self._drain.join(timeout=5)
        said = "\n".join(self.tail) or "(it printed nothing)"
        code = self.proc.poll()
        if code == REFUSED:
            return WeftSparkError(f"{self.what} refused the job while {doing} ({NOT_RETRIED}):\n{said}")
        how = f"exited with {code}" if code is not None and code >= 0 else f"was killed by signal {-code}" if code else "failed"
        return WeftSparkError(f"{self.what} {how} while {doing}:\n{said}")

    def stop(self, doing, timeout=10):
        """Ends the process after something went wrong: closes its stdin (it exits when that
        closes), waits `timeout` seconds, kills it if it is still there, and returns the
        error to raise, with what it said."""
        try:
            self.proc.stdin.close()
        except (OSError, ValueError):
            pass
        try:
            self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        return self.failure(doing)

    def wait(self, doing):
        """Waits for the process to end; raises with what it said unless it succeeded."""
        code = self.proc.wait()
        if code != 0:
            raise self.failure(doing)

    def close(self):
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        self._drain.join(timeout=5)
        for f in (self.proc.stdin, self.proc.stdout, self.proc.stderr):
            try:
                f.close()
            except (OSError, ValueError):
                pass

"""Finding the weft executable on the driver and on the executors.

The driver finds it (``WEFT_BIN``, then ``PATH``) and ships it to every executor with
``SparkContext.addFile``: nothing has to be installed on the nodes but this package and
pyspark, and the executors run exactly the driver's weft. (The alternative, a wheel that
carries the binary, needs a wheel per platform built with maturin; addFile needs none, and
weft's default build is portable across x86-64 nodes.)
"""

import os
import shutil
import stat

_shipped = {}


class WeftSparkError(RuntimeError):
    """A weft run on Spark failed; the message says where and why."""


def find_weft():
    """The weft executable on this machine: WEFT_BIN, else `weft` on the PATH."""
    path = os.environ.get("WEFT_BIN") or shutil.which("weft")
    if not path or not os.path.isfile(path):
        raise WeftSparkError(
            "no weft executable: set WEFT_BIN to its path, or put `weft` on the PATH "
            f"(looked at WEFT_BIN={os.environ.get('WEFT_BIN')!r} and the PATH)"
        )
    return os.path.abspath(path)


def ship(sc):
    """Adds the driver's weft to the files of `sc` (once per context and file); returns
    the name tasks find it under."""
    path = find_weft()
    st = os.stat(path)
    key = (id(sc), path, st.st_mtime_ns, st.st_size)
    name = os.path.basename(path)
    if key not in _shipped:
        if any(k[0] == id(sc) and k[1] == path for k in _shipped):
            raise WeftSparkError(
                f"{path} changed since this Spark session shipped it to the executors; "
                "Spark ships a file once per session: start a new session to use the new build"
            )
        sc.addFile(path)
        _shipped[key] = name
    return name


def on_executor(name):
    """The shipped weft on this executor, made executable."""
    from pyspark import SparkFiles

    path = SparkFiles.get(name)
    mode = os.stat(path).st_mode
    if not mode & stat.S_IXUSR:
        os.chmod(path, mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
    return path

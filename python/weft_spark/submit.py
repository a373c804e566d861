"""`weft run` with `executor.cluster: spark`: the Spark driver side of the run.

weft writes a job file into the run directory and starts this module in the Python of
`executor.spark.python` (or WEFT_PYTHON); it starts a Spark session with the spec's master
and settings, reads the spec's data source with Spark (CSV and Parquet on the executors;
what only weft reads, as the Arrow file weft wrote), fits a WeftEstimator, writes the
model's files into the run directory, and writes its answer (nothing, or the error) beside
them. weft then reads the run as its own.
"""

import json
import os
import re
import sys
import time

from ._binary import WeftSparkError

# What the trained rank's run directory gives the local one (weft writes the spec itself).
_KEEP = ("plan.json", "preprocess.json", "model.safetensors", "summary.json", "metrics.jsonl")


def _say(msg):
    sys.stderr.write(f"weft: {msg}\n")
    sys.stderr.flush()


def _session(job):
    from pyspark.sql import SparkSession

    # The executors' Python workers are this Python (weft_spark and pyarrow are here).
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    b = SparkSession.builder.appName(job["app_name"])
    if job.get("master"):
        b = b.master(job["master"])
    elif "spark.master" not in job["conf"] and not os.environ.get("MASTER"):
        b = b.master("local[*]")
    for k, v in job["conf"].items():
        b = b.config(k, v)
    spark = b.getOrCreate()
    spark.sparkContext.setLogLevel("ERROR")
    return spark


def _read(spark, source):
    if "csv" in source:
        return (spark.read.option("header", True).option("inferSchema", True)
                .option("mode", "FAILFAST").csv(source["csv"]))
    if "parquet" in source:
        return spark.read.parquet(source["parquet"])
    import pyarrow as pa

    with pa.memory_map(source["arrow"]) as f:
        table = pa.ipc.open_file(f).read_all()
    return spark.createDataFrame(table)


def _message(e):
    """What went wrong, without the JVM's stack: weft's own message where it has one."""
    text = str(e)
    for pattern in (r"WeftSparkError: (.+?)(?:\n\s+at |\n\n|\Z)", r"weft_spark\._binary\.WeftSparkError: (.+?)(?:\n\s+at |\Z)"):
        m = re.search(pattern, text, re.S)
        if m:
            return re.sub(r"\s*SQLSTATE: \w+\s*$", "", m.group(1)).strip()
    first = text.strip().splitlines()
    return f"{type(e).__name__}: {first[0] if first else ''}"


def _write(path, blob):
    tmp = path + ".partial"
    with open(tmp, "wb") as f:
        f.write(blob)
    os.replace(tmp, path)


def run(job):
    from .estimator import WeftEstimator

    started = time.time()
    spark = _session(job)
    try:
        sc = spark.sparkContext
        _say(f"Spark {spark.version}, master {sc.master}, application {sc.applicationId} "
             f"({time.time() - started:.1f} s to start)")
        df = _read(spark, job["source"])
        sets = dict(s.split("=", 1) for s in job["sets"])
        est = WeftEstimator(spec=job["spec"], num_workers=job["workers"], overrides=sets)
        model = est.fit(df)
        for name in _KEEP:
            if name in model.files:
                _write(os.path.join(job["run_dir"], name), model.files[name])
        _say(f"fit on Spark in {time.time() - started:.1f} s "
             f"({model.attempts} attempt{'s' if model.attempts > 1 else ''})")
    finally:
        spark.stop()


def main(job_path):
    with open(job_path) as f:
        job = json.load(f)
    try:
        run(job)
        answer = {}
    except Exception as e:  # every failure is answered: weft prints it
        answer = {"error": e.args[0] if isinstance(e, WeftSparkError) else _message(e)}
    _write(job["answer"], json.dumps(answer).encode())
    return 0 if not answer else 1

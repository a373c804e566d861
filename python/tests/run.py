#!/usr/bin/env python3
"""weft on Spark, tested on a real local cluster: `local-cluster[2,1,1024]` starts a master,
two workers and two executor JVMs with their own Python workers, so barrier stages, task
failures and killed processes behave as on a cluster.

Needs pyspark (4.x) and pyarrow in this Python, a JDK 17, and WEFT_BIN (the weft to test).
Ends with `spark: N passed, M failed`. Usage: run.py [test name substrings...]
"""

import csv
import glob
import json
import math
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
import traceback

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.abspath(os.path.join(HERE, "..", ".."))
WEFT = os.environ.get("WEFT_BIN") or os.path.join(ROOT, "target", "debug", "weft")
os.environ["WEFT_BIN"] = WEFT
os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
os.environ["PYSPARK_PYTHON"] = sys.executable

TMP = tempfile.mkdtemp(prefix="weft-spark-tests-")

SPEC = """
name: rings
seed: 7
data:
  source: {csv: %(train)s}
  label: label
  preprocess:
    - standard_scale: {}
  split: {train: 0.9, test: 0.1}
model:
  - dense: {units: 32, activation: relu}
  - dense: {units: 32, activation: relu}
  - dense: {units: 2, activation: softmax}
train:
  loss: cross_entropy
  optimizer: {adam: {lr: 0.003}}
  batch_size: 32
  epochs: 20
evaluate: [accuracy]
parallelism:
  data: {workers: 2, sync: allreduce, timeout_s: 10}
"""


def rings(path, n, seed):
    """Points in the plane labelled by the ring they fall in (learnable, not linear)."""
    rnd = random.Random(seed)
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["x", "y", "noise", "label"])
        for _ in range(n):
            x, y = rnd.uniform(-3, 3), rnd.uniform(-3, 3)
            w.writerow([f"{x:.5f}", f"{y:.5f}", f"{rnd.gauss(0, 1):.5f}",
                        int(math.hypot(x, y) < 1.8)])


TRAIN = os.path.join(TMP, "train.csv")
TEST = os.path.join(TMP, "test.csv")
SPEC_PATH = os.path.join(TMP, "rings.yaml")


def weft_processes():
    """PIDs of the weft processes tasks started (spark-task or predict: the executors run
    the copy Spark shipped them)."""
    out = subprocess.run(["pgrep", "-f", "/weft (spark-task|predict) "], capture_output=True,
                         text=True).stdout
    return [int(p) for p in out.split()]


def left_running(within=20):
    """The weft processes still running after waiting up to `within` seconds for them to
    end (a killed task's process exits when its stdin closes, a moment after the task):
    their command lines, empty when none are left."""
    deadline = time.time() + within
    while True:
        pids = weft_processes()
        if not pids or time.time() > deadline:
            break
        time.sleep(0.2)
    out = []
    for pid in pids:
        try:
            out.append(open(f"/proc/{pid}/cmdline", "rb").read().replace(b"\0", b" ").decode())
        except OSError:
            pass
    return out


def accuracy(rows, label="label"):
    return sum(1 for r in rows if r["prediction"] == float(r[label])) / len(rows)


def test_fit_matches_weft_run_and_model_round_trips(spark):
    from weft_spark import WeftEstimator, WeftModel

    # The same spec, run by `weft run` with 2 local workers, then through Spark.
    run = subprocess.run([WEFT, "run", SPEC_PATH, "--json", "--runs-dir", os.path.join(TMP, "runs")],
                         capture_output=True, text=True, check=True)
    run_dir = json.loads(run.stdout)["run_dir"]
    pred = subprocess.run([WEFT, "predict", "--model", run_dir, "--input", TEST],
                          capture_output=True, text=True, check=True).stderr
    weft_acc = float(pred.split("accuracy on ")[1].split(": ")[1].split()[0])

    train = spark.read.csv(TRAIN, header=True, inferSchema=True)
    model = WeftEstimator(spec=SPEC_PATH, num_workers=2).fit(train)
    test = spark.read.csv(TEST, header=True, inferSchema=True).repartition(3)
    rows = model.transform(test).collect()
    assert len(rows) == 2000, len(rows)
    spark_acc = accuracy(rows)
    print(f"  accuracy on test.csv: weft run {weft_acc:.4f}, Spark {spark_acc:.4f}")
    assert abs(spark_acc - weft_acc) <= 0.01, (weft_acc, spark_acc)
    assert all(len(r["probability"]) == 2 and abs(sum(r["probability"]) - 1) < 1e-5 for r in rows)
    assert model.metrics["test"]["accuracy"] > 0.9, model.metrics

    where = os.path.join(TMP, "model")
    model.save(where)
    loaded = WeftModel.load(where)
    again = loaded.transform(test).collect()
    assert [r["prediction"] for r in again] == [r["prediction"] for r in rows]
    assert loaded.metrics == model.metrics and loaded.getOrDefault("numWorkers") == 2
    # As a run directory `weft predict` reads: the same accuracy on the same rows.
    folder = os.path.join(TMP, "model-folder")
    model.save_folder(folder)
    pred = subprocess.run([WEFT, "predict", "--model", folder, "--input", TEST],
                          capture_output=True, text=True, check=True).stderr
    assert f"{spark_acc:.4f}" in pred, (spark_acc, pred)
    assert not left_running(), f"weft processes left running: {left_running(0)}"


def test_parameter_server(spark):
    from weft_spark import WeftEstimator

    train = spark.read.csv(TRAIN, header=True, inferSchema=True)
    est = WeftEstimator(spec=SPEC_PATH, num_workers=2, overrides={
        "parallelism.data.sync": "parameter_server",
        "parallelism.data.algorithm": "downpour",
        "parallelism.data.communication_window": 4,
    })
    model = est.fit(train)
    acc = model.metrics["test"]["accuracy"]
    print(f"  parameter server (downpour): test accuracy {acc:.4f}")
    assert acc > 0.85, model.metrics
    assert model.result["comm"]["strategy"].startswith("parameter_server"), model.result["comm"]


def test_pipeline_with_indexer_and_assembler(spark):
    from pyspark.ml import Pipeline
    from pyspark.ml.feature import StringIndexer, VectorAssembler
    from weft_spark import WeftEstimator

    iris = spark.read.csv(os.path.join(ROOT, "crates", "data", "src", "iris.csv"), header=True,
                          inferSchema=True)
    pipe = Pipeline(stages=[
        StringIndexer(inputCol="species", outputCol="label"),
        VectorAssembler(inputCols=["sepal_length", "sepal_width", "petal_length", "petal_width"],
                        outputCol="features"),
        WeftEstimator(spec=os.path.join(ROOT, "specs", "iris.yaml"), num_workers=2,
                      label_col="label", features_col="features",
                      overrides={"parallelism.data.workers": 2}),
    ])
    fitted = pipe.fit(iris)
    rows = fitted.transform(iris).select("species", "label", "prediction").collect()
    assert len(rows) == 150
    acc = accuracy(rows)
    print(f"  Pipeline [StringIndexer, VectorAssembler, WeftEstimator]: accuracy {acc:.4f}")
    assert acc > 0.9, acc
    # Spark ML persistence: the fitted pipeline and the unfitted one save and load.
    from pyspark.ml import PipelineModel

    where = os.path.join(TMP, "pipeline-model")
    fitted.save(where)
    again = PipelineModel.load(where).transform(iris).select("prediction").collect()
    assert [r["prediction"] for r in again] == [r["prediction"] for r in rows]
    pipe.write().overwrite().save(os.path.join(TMP, "pipeline"))
    stages = Pipeline.load(os.path.join(TMP, "pipeline")).getStages()
    assert type(stages[2]).__name__ == "WeftEstimator" and stages[2].getOrDefault("numWorkers") == 2


def test_dynamic_allocation_is_refused_with_a_message(spark):
    from types import SimpleNamespace

    from weft_spark import WeftEstimator, WeftSparkError

    # The check reads the context's static settings (a session's cannot be changed).
    sc = SimpleNamespace(defaultParallelism=8,
                         getConf=lambda: {"spark.dynamicAllocation.enabled": "true"})
    try:
        WeftEstimator(spec=SPEC_PATH, num_workers=2)._check_cluster(sc, 2)
    except WeftSparkError as e:
        assert "spark.dynamicAllocation.enabled is true" in str(e), e
    else:
        raise AssertionError("dynamic allocation was not refused")


def test_a_spec_error_fails_once_and_is_not_retried(spark):
    from weft_spark import WeftEstimator

    train = spark.read.csv(TRAIN, header=True, inferSchema=True)
    started = time.time()
    try:
        WeftEstimator(spec=SPEC_PATH, num_workers=2, max_retries=3, label_col="nope").fit(train)
    except Exception as e:
        said = str(e)
        assert "not retried" in said and "nope" in said, said[-3000:]
    else:
        raise AssertionError("a missing label column was not refused")
    print(f"  refused in {time.time() - started:.1f}s")
    assert not left_running(), f"weft processes left running: {left_running(0)}"


def test_a_task_gpu_becomes_the_worker_gpu(spark):
    from types import SimpleNamespace

    from weft_spark._tasks import gpu_env

    assert gpu_env({}) == {}
    assert gpu_env({"gpu": SimpleNamespace(name="gpu", addresses=["3"])}) == {
        "LOCAL_RANK": "3", "WEFT_SPARK_GPU": "3"}


def test_weft_run_on_spark_from_the_cli(spark):
    # The same spec: `weft run` with its own 2 local workers, and on Spark (its own session:
    # local[2]) after changing `executor.cluster`; both models score test.csv alike.
    runs = os.path.join(TMP, "cli-runs")
    accs = []
    for sets in ([], ["executor.cluster=spark", "executor.spark.master=local[2]",
                      f"executor.spark.python={sys.executable}",
                      "executor.spark.conf.spark.ui.enabled=false"]):
        args = [WEFT, "run", SPEC_PATH, "--json", "--runs-dir", runs]
        for s in sets:
            args += ["--set", s]
        run = subprocess.run(args, capture_output=True, text=True)
        assert run.returncode == 0, run.stderr[-3000:]
        result = json.loads(run.stdout)
        pred = subprocess.run([WEFT, "predict", "--model", result["run_dir"], "--input", TEST],
                              capture_output=True, text=True, check=True).stderr
        accs.append(float(pred.split("accuracy on ")[1].split(": ")[1].split()[0]))
    print(f"  accuracy on test.csv: weft run {accs[0]:.4f}, weft run on Spark {accs[1]:.4f}")
    assert abs(accs[0] - accs[1]) <= 0.015, accs
    assert result["metrics"]["test"]["accuracy"] > 0.9, result["metrics"]
    assert any("trained on Spark" in n for n in result["notes"]), result["notes"]
    assert sorted(n for n in os.listdir(result["run_dir"]) if n != ".lock") == sorted(
        ["metrics.jsonl", "model.safetensors", "plan.json", "preprocess.json",
         "spec.resolved.json", "summary.json"]), os.listdir(result["run_dir"])
    with open(os.path.join(result["run_dir"], "spec.resolved.json")) as f:
        assert json.load(f)["executor"]["cluster"] == "spark"
    # A source Spark cannot find: weft says so, with Spark's words, and leaves no job behind.
    run = subprocess.run([WEFT, "run", SPEC_PATH, "--runs-dir", runs, "--set",
                          "data.source.csv=/no/such.csv", *[a for s in sets for a in ("--set", s)]],
                         capture_output=True, text=True)
    assert run.returncode == 2 and "the Spark job failed" in run.stderr, run.stderr[-3000:]
    assert "/no/such.csv" in run.stderr.splitlines()[-1], run.stderr[-2000:]


def test_too_few_slots_is_refused_at_once(spark):
    from weft_spark import WeftEstimator, WeftSparkError

    train = spark.read.csv(TRAIN, header=True, inferSchema=True)
    started = time.time()
    try:
        WeftEstimator(spec=SPEC_PATH, num_workers=3).fit(train)
    except WeftSparkError as e:
        assert "use at most 2" in str(e), e
    else:
        raise AssertionError("3 workers on 2 slots were not refused")
    assert time.time() - started < 10


def test_a_retry_resumes_from_the_checkpoint_and_finishes(spark):
    import threading
    from weft_spark import WeftEstimator

    train = spark.read.csv(TRAIN, header=True, inferSchema=True)
    ckpt = os.path.join(TMP, "checkpoints")
    killed = []
    threading.Thread(target=kill_rank_1, args=(killed, ckpt), daemon=True).start()
    epochs = 40
    est = WeftEstimator(spec=SPEC_PATH, num_workers=2, max_retries=1, checkpoint_dir=ckpt,
                        overrides={"train.epochs": epochs})
    model = est.fit(train)
    assert killed, "no rank 1 process was found to kill"
    assert model.attempts == 2, model.attempts
    history = [h["epoch"] for h in model.result["history"]]
    assert history == list(range(1, epochs + 1)), history
    print(f"  rank 1 killed after epoch {killed[1]}; the retry resumed and trained to epoch {epochs}")
    assert killed[1] >= 1
    assert model.metrics["test"]["accuracy"] > 0.9, model.metrics
    assert not left_running(), f"weft processes left running: {left_running(0)}"


def kill_rank_1(killed, ckpt=None):
    """Kills the first rank-1 weft process once training is under way (with `ckpt`: once
    rank 0 has checkpointed an epoch there); records when and after which epoch."""
    deadline = time.time() + 120
    while time.time() < deadline:
        done = 0
        if ckpt:
            for m in glob.glob(os.path.join(ckpt, "*", "*", "*", "metrics.jsonl")):
                done = max(done, sum(1 for _ in open(m)))
            if done < 2:
                time.sleep(0.1)
                continue
        for pid in weft_processes():
            try:
                env = open(f"/proc/{pid}/environ", "rb").read().split(b"\0")
            except OSError:
                continue
            if b"RANK=1" in env:
                if not ckpt:
                    time.sleep(2)  # into training
                os.kill(pid, signal.SIGKILL)
                killed += [time.time(), done]
                return
        time.sleep(0.1)


def test_a_killed_worker_fails_the_stage_and_leaves_nothing_running(spark):
    import threading
    from weft_spark import WeftEstimator

    train = spark.read.csv(TRAIN, header=True, inferSchema=True)
    killed = []
    assert not weft_processes()
    leftovers = lambda: set(glob.glob(os.path.join(tempfile.gettempdir(), "weft-task-*")))
    before = leftovers()
    threading.Thread(target=kill_rank_1, args=(killed,), daemon=True).start()
    est = WeftEstimator(spec=SPEC_PATH, num_workers=2, overrides={"train.epochs": 200})
    try:
        est.fit(train)
    except Exception as e:  # the stage's failure, raised by Spark
        message = str(e)
    else:
        raise AssertionError("the fit succeeded although a worker was killed")
    assert killed, "no rank 1 process was found to kill"
    took = time.time() - killed[0]
    print(f"  the stage failed {took:.1f}s after rank 1 was killed")
    assert took < 60, took
    assert "weft rank" in message, message[-2000:]
    assert not left_running(), f"weft processes left running: {left_running(0)}"
    # The tasks' folders (the spooled rows in them) are gone too, the killed rank's included.
    assert leftovers() <= before, f"task folders left: {leftovers() - before}"


def main():
    from pyspark.sql import SparkSession

    rings(TRAIN, 4000, 1)
    rings(TEST, 2000, 2)
    with open(SPEC_PATH, "w") as f:
        f.write(SPEC % {"train": json.dumps(TRAIN)})
    tests = [(n, f) for n, f in sorted(globals().items()) if n.startswith("test_")]
    if len(sys.argv) > 1:
        tests = [(n, f) for n, f in tests if any(a in n for a in sys.argv[1:])]
    started = time.time()
    spark = (SparkSession.builder.master("local-cluster[2,1,1024]")
             .config("spark.driver.host", "127.0.0.1")
             .config("spark.ui.enabled", "false")
             .config("spark.ui.showConsoleProgress", "false")
             .config("spark.executorEnv.SPARK_LOCAL_IP", "127.0.0.1")
             .getOrCreate())
    spark.sparkContext.setLogLevel("ERROR")
    print(f"local-cluster[2,1,1024] up in {time.time() - started:.0f}s", flush=True)
    passed = failed = 0
    for name, f in tests:
        t = time.time()
        try:
            f(spark)
            passed += 1
            print(f"ok   {name} ({time.time() - t:.0f}s)", flush=True)
        except Exception:
            failed += 1
            # A Spark failure's text is mostly JVM frames: keep the Python and weft lines.
            lines = [l for l in traceback.format_exc().splitlines()
                     if not l.lstrip().startswith(("at ", "..."))]
            print(f"FAIL {name} ({time.time() - t:.0f}s)\n" + "\n".join(lines[:60]), flush=True)
    spark.stop()
    import shutil
    shutil.rmtree(TMP, ignore_errors=True)
    print(f"spark: {passed} passed, {failed} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())

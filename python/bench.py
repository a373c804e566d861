#!/usr/bin/env python3
"""weft on Spark, measured against its baselines in one run (BENCHMARKS.md, "On Spark").

On a local-cluster of 2 executors (1 core each) and a HIGGS-shaped synthetic data set
(28 features, 2 classes, Parquet):
  1. fit: WeftEstimator (2 barrier tasks; the session's first fit, then again warm) against `weft run` of the same spec with 2 local
     workers on the same Parquet file: samples/s of training, and the whole call's seconds
     (the difference is Spark's start of the stage, the Arrow hand-off and the preparing
     by ranged reads; reported per million rows);
  2. transform (mapInArrow through `weft predict --input -`) against `weft predict` on the
     same file: rows/s;
  3. Spark MLlib's MultilayerPerceptronClassifier on the same DataFrame and layers: the
     time to reach weft's test accuracy (maxIter raised until it does, or the cap).

Usage: WEFT_BIN=target/release/weft python python/bench.py [--rows 200000] [--epochs 2]
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

SPEC = """
name: higgs-spark
seed: 42
data:
  source: {parquet: %(data)s}
  label: label
  preprocess: [{standard_scale: {}}]
  split: {train: 0.8, test: 0.2}
model:
  - dense: {units: %(units)d, activation: relu}
  - dense: {units: %(units)d, activation: relu}
  - dense: {units: 2, activation: softmax}
train:
  loss: cross_entropy
  optimizer: {adam: {lr: 0.001}}
  batch_size: 64
  epochs: %(epochs)d
evaluate: [accuracy]
parallelism:
  data: {workers: 2, sync: allreduce}
"""


def make_data(path, rows, seed=0):
    """28 features, 20 informative, a nonlinear boundary (as HIGGS: hard, not hopeless)."""
    rnd = np.random.default_rng(seed)
    x = rnd.standard_normal((rows, 28)).astype(np.float64)
    w = rnd.standard_normal((20, 20))
    h = np.tanh(x[:, :20] @ w / np.sqrt(20))
    score = h @ rnd.standard_normal(20) + 0.3 * rnd.standard_normal(rows)
    y = (score > np.median(score)).astype(np.int64)
    cols = {f"f{i}": x[:, i] for i in range(28)}
    cols["label"] = y
    pq.write_table(pa.table(cols), path, row_group_size=65536)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--rows", type=int, default=200_000)
    ap.add_argument("--epochs", type=int, default=2)
    ap.add_argument("--units", type=int, default=64)
    ap.add_argument("--mllib-iters", default="10,25,50,100,200")
    args = ap.parse_args()
    weft = os.environ.get("WEFT_BIN", "weft")
    os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
    os.environ["PYSPARK_PYTHON"] = sys.executable
    tmp = tempfile.mkdtemp(prefix="weft-spark-bench-")
    data = os.path.join(tmp, "higgs.parquet")
    make_data(data, args.rows)
    spec = os.path.join(tmp, "spec.yaml")
    with open(spec, "w") as f:
        f.write(SPEC % {"data": json.dumps(data), "epochs": args.epochs, "units": args.units})
    print(f"{args.rows} rows × 28 features, 28-{args.units}-{args.units}-2, {args.epochs} epochs, "
          f"batch 64 per worker, 2 workers", flush=True)

    def weft_run(*sets):
        t = time.time()
        args = [weft, "run", spec, "--json", "--runs-dir", tmp]
        for s in sets:
            args += ["--set", s]
        r = json.loads(subprocess.run(args, capture_output=True, text=True, check=True).stdout)
        return r, time.time() - t

    run, weft_wall = weft_run()
    weft_sps = run["train"]["samples_per_sec"]
    weft_acc = run["metrics"]["test"]["accuracy"]
    # Streamed from the same file (a shuffle buffer, as the Spark workers stream their rows):
    # what streaming costs, apart from Spark.
    streamed, streamed_wall = weft_run("data.shuffle=buffer")
    streamed_sps = streamed["train"]["samples_per_sec"]

    from pyspark.sql import SparkSession
    from weft_spark import WeftEstimator

    spark = (SparkSession.builder.master("local-cluster[2,1,2048]")
             .config("spark.driver.host", "127.0.0.1").config("spark.ui.enabled", "false")
             .config("spark.ui.showConsoleProgress", "false")
             .config("spark.driver.memory", "2g").getOrCreate())
    spark.sparkContext.setLogLevel("ERROR")
    df = spark.read.parquet(data).cache()
    df.count()
    t = time.time()
    model = WeftEstimator(spec=spec, num_workers=2).fit(df)
    spark_wall = time.time() - t
    # The same fit again in the now warm session (Spark's first barrier stage of a session
    # pays for starting the executors' Python workers and loading classes).
    t = time.time()
    warm_model = WeftEstimator(spec=spec, num_workers=2).fit(df)
    warm_wall = time.time() - t
    spark_sps = model.result["train"]["samples_per_sec"]
    spark_train_s = model.result["train"]["seconds"]
    spark_acc = model.metrics["test"]["accuracy"]
    handoff = spark_wall - spark_train_s
    print(f"fit        weft run (2 local workers): {weft_sps:10.0f} samples/s, {weft_wall:6.1f} s in all, "
          f"test accuracy {weft_acc:.4f}")
    print(f"           weft run, streamed:         {streamed_sps:10.0f} samples/s, {streamed_wall:6.1f} s in all, "
          f"test accuracy {streamed['metrics']['test']['accuracy']:.4f}")
    print(f"           WeftEstimator (2 tasks):    {spark_sps:10.0f} samples/s, {spark_wall:6.1f} s in all, "
          f"test accuracy {spark_acc:.4f}")
    print(f"           WeftEstimator again, warm:  {warm_model.result['train']['samples_per_sec']:10.0f} samples/s, "
          f"{warm_wall:6.1f} s in all, test accuracy {warm_model.metrics['test']['accuracy']:.4f}")
    print(f"           ratio (Spark / weft run): training {spark_sps / weft_sps:.2f}× "
          f"(streamed: {spark_sps / streamed_sps:.2f}×), whole call {weft_wall / spark_wall:.2f}× "
          f"(streamed: {streamed_wall / spark_wall:.2f}×)")
    streamed_outside = streamed_wall - streamed["train"]["seconds"]
    print(f"           outside training: Spark {handoff:.1f} s = {handoff / args.rows * 1e6:.1f} s per "
          f"million rows; weft run streamed {streamed_outside:.1f} s = "
          f"{streamed_outside / args.rows * 1e6:.1f} s per million rows", flush=True)

    t = time.time()
    subprocess.run([weft, "predict", "--model", run["run_dir"], "--input", data, "--output",
                    os.path.join(tmp, "pred.csv")], capture_output=True, check=True)
    predict_rps = args.rows / (time.time() - t)
    t = time.time()
    model.transform(df).write.format("noop").mode("overwrite").save()
    transform_rps = args.rows / (time.time() - t)
    print(f"transform  weft predict: {predict_rps:10.0f} rows/s; WeftModel.transform: "
          f"{transform_rps:10.0f} rows/s ({transform_rps / predict_rps:.2f}×)", flush=True)

    from pyspark.ml.classification import MultilayerPerceptronClassifier
    from pyspark.ml.evaluation import MulticlassClassificationEvaluator
    from pyspark.ml.feature import StandardScaler, VectorAssembler

    vec = VectorAssembler(inputCols=[f"f{i}" for i in range(28)], outputCol="raw").transform(df)
    vec = StandardScaler(inputCol="raw", outputCol="features").fit(vec).transform(vec)
    train, test = vec.randomSplit([0.8, 0.2], seed=42)
    train = train.select("features", "label").repartition(2).cache()
    train.count()
    ev = MulticlassClassificationEvaluator(metricName="accuracy")
    reached = None
    for iters in [int(i) for i in args.mllib_iters.split(",")]:
        t = time.time()
        mlp = MultilayerPerceptronClassifier(layers=[28, args.units, args.units, 2], maxIter=iters,
                                             seed=42).fit(train)
        secs = time.time() - t
        acc = ev.evaluate(mlp.transform(test))
        print(f"mllib      MultilayerPerceptronClassifier maxIter={iters}: {secs:7.1f} s, "
              f"test accuracy {acc:.4f}", flush=True)
        if acc >= weft_acc - 0.005:
            reached = secs
            break
    if reached:
        print(f"           to weft's accuracy: MLlib {reached:.1f} s, WeftEstimator {spark_wall:.1f} s "
              f"as the session's first fit ({reached / spark_wall:.1f}× faster), {warm_wall:.1f} s "
              f"warm ({reached / warm_wall:.1f}× faster)")
    else:
        print(f"           MLlib did not reach weft's accuracy {weft_acc:.4f} within the iterations "
              f"tried (last {secs:.1f} s); WeftEstimator {spark_wall:.1f} s")
    spark.stop()


if __name__ == "__main__":
    main()

"""WeftEstimator and WeftModel: weft as a Spark ML Estimator and Model."""

import glob
import json
import logging
import os
import time
import secrets
from functools import partial

from pyspark.ml import Estimator, Model
from pyspark.ml.param import Param, Params, TypeConverters
from pyspark.ml.util import DefaultParamsReadable, DefaultParamsWritable, MLReadable, MLWritable
from pyspark.sql import DataFrame, functions as F
from pyspark.sql.types import ArrayType, DoubleType, StructField, StructType

from . import _persist, _relay, _tasks
from ._binary import WeftSparkError, ship
from ._process import NOT_RETRIED


class _WeftParams(Params):
    spec = Param(Params._dummy(), "spec", "path of the weft spec (YAML or JSON)",
                 TypeConverters.toString)
    numWorkers = Param(Params._dummy(), "numWorkers", "weft workers (barrier tasks)",
                       TypeConverters.toInt)
    overrides = Param(Params._dummy(), "overrides", "spec overrides, {path: value} as JSON",
                      TypeConverters.toString)
    labelCol = Param(Params._dummy(), "labelCol", "label column (default: the spec's)",
                     TypeConverters.toString)
    maxRetries = Param(Params._dummy(), "maxRetries",
                       "times a failed fit stage is started again (resuming from the last "
                       "checkpoint when checkpointDir is set)", TypeConverters.toInt)
    checkpointDir = Param(Params._dummy(), "checkpointDir",
                          "a folder the driver and every executor reach (a shared file "
                          "system): rank 0 writes its run and checkpoints there",
                          TypeConverters.toString)
    featuresCol = Param(Params._dummy(), "featuresCol",
                        "one vector or array column holding the features (default: the "
                        "DataFrame's columns, as the spec selects them)", TypeConverters.toString)

    def _features(self):
        return self.getOrDefault(self.featuresCol) if self.isDefined(self.featuresCol) else None


def _expand(df, col):
    """`df` with the vector or array column `col` also as scalar columns `col_0`…; returns
    the frame and their names."""
    field = df.schema[col]
    if type(field.dataType).__name__ == "VectorUDT":
        from pyspark.ml.functions import vector_to_array

        arr = vector_to_array(F.col(col))
        size = field.metadata.get("ml_attr", {}).get("num_attrs")
    elif isinstance(field.dataType, ArrayType):
        arr = F.col(col)
        size = None
    else:
        raise WeftSparkError(f"featuresCol {col!r} is {field.dataType.simpleString()}; "
                             "it must be a vector (VectorAssembler) or an array column")
    if size is None:
        first = df.select(arr.alias("a")).first()
        if first is None:
            raise WeftSparkError(f"featuresCol {col!r}: the DataFrame has no rows")
        size = len(first["a"])
    names = [f"{col}_{i}" for i in range(size)]
    return df.select("*", *[arr[i].cast("double").alias(n) for i, n in enumerate(names)]), names


def _threads(sc):
    return int(sc.getConf().get("spark.task.cpus", "1"))


class WeftEstimator(Estimator, _WeftParams, DefaultParamsReadable, DefaultParamsWritable):
    """Trains a weft spec on a DataFrame in one barrier stage of `num_workers` tasks.

    The spec's `data.source` is not read (the DataFrame is the data); its preprocessing,
    model, training and `parallelism.data` strategy are used as they are.
    """

    def __init__(self, spec=None, num_workers=2, overrides=None, label_col=None,
                 features_col=None, max_retries=0, checkpoint_dir=None):
        super().__init__()
        self._setDefault(numWorkers=2, overrides="{}", maxRetries=0)
        self._set(maxRetries=max_retries)
        if checkpoint_dir is not None:
            self._set(checkpointDir=checkpoint_dir)
        if spec is not None:
            self._set(spec=spec)
        self._set(numWorkers=num_workers, overrides=json.dumps(overrides or {}))
        if label_col is not None:
            self._set(labelCol=label_col)
        if features_col is not None:
            self._set(featuresCol=features_col)

    def _sets(self):
        sets = [f"{k}={json.dumps(v) if not isinstance(v, str) else v}"
                for k, v in json.loads(self.getOrDefault(self.overrides)).items()]
        if self.isDefined(self.labelCol):
            sets.append(f"data.label={self.getOrDefault(self.labelCol)}")
        return sets

    def _check_cluster(self, sc, n):
        conf = sc.getConf()
        if conf.get("spark.dynamicAllocation.enabled", "false").lower() == "true":
            raise WeftSparkError(
                "spark.dynamicAllocation.enabled is true: a barrier stage needs all its "
                f"{n} tasks at once, and executors that come and go cannot give that; "
                "turn dynamic allocation off for this session")
        slots = sc.defaultParallelism // max(_threads(sc), 1)
        if n > slots:
            raise WeftSparkError(
                f"num_workers={n}, but this cluster runs {slots} tasks at once "
                f"(spark.default.parallelism {sc.defaultParallelism}, spark.task.cpus "
                f"{_threads(sc)}); a barrier stage needs a slot per worker: use at most {slots}")

    def _run_stage(self, df, job):
        """Runs the barrier stage, starting it again up to maxRetries times when it fails
        (Spark does not retry a barrier stage), resuming from the last checkpoint when
        there is a checkpointDir. Returns the collected rows and the attempts made."""
        retries = self.getOrDefault(self.maxRetries)
        ckpt = self.getOrDefault(self.checkpointDir) if self.isDefined(self.checkpointDir) else None
        runs = None
        if ckpt:
            runs = os.path.join(os.path.abspath(ckpt), f"fit-{time.strftime('%Y%m%d-%H%M%S')}-{job['token'][:8]}")
            os.makedirs(runs, exist_ok=True)
        for attempt in range(retries + 1):
            job = dict(job, runs_dir=runs, resume=_last_run(runs) if attempt else None)
            try:
                rows = (df.mapInArrow(partial(_tasks.train_task, job=job), _tasks.FILES_SCHEMA,
                                      barrier=True).collect())
                return rows, attempt + 1
            except Exception as e:  # the stage failed (a task, a worker, an executor)
                said = str(e)
                # A spec or data error fails every attempt the same way.
                if attempt == retries or NOT_RETRIED in said or "while starting" in said:
                    raise
                where = f", resuming from {job['resume'] or _last_run(runs)}" if runs else ""
                logging.getLogger("weft_spark").warning(
                    "the fit stage failed (attempt %d of %d); starting it again%s", attempt + 1,
                    retries + 1, where)

    def _fit(self, df: DataFrame):
        if not self.isDefined(self.spec):
            raise WeftSparkError("WeftEstimator needs spec= (the path of a weft spec)")
        path = self.getOrDefault(self.spec)
        with open(path) as f:
            spec_text = f.read()
        n = self.getOrDefault(self.numWorkers)
        if n < 1:
            raise WeftSparkError(f"num_workers={n}; it must be at least 1")
        sc = df.sparkSession.sparkContext
        self._check_cluster(sc, n)
        features = self._features()
        if features:
            df, names = _expand(df, features)
            label = self.getOrDefault(self.labelCol) if self.isDefined(self.labelCol) else "label"
            df = df.select(label, *names)
        from pyspark.sql.pandas.types import to_arrow_schema

        job = {
            "spec": spec_text,
            "spec_name": path,
            "sets": self._sets(),
            "token": secrets.token_hex(16),
            "binary": ship(sc),
            "threads": _threads(sc),
            "schema": to_arrow_schema(df.schema).serialize().to_pybytes(),
        }
        # Rank 0's epoch lines, printed here as they come (on standard error, as weft does);
        # best effort: a driver host this process cannot listen on only loses them.
        try:
            relay = _relay.Listener(sc.getConf().get("spark.driver.host", "127.0.0.1"), job["token"])
            job["progress"] = relay.address
        except OSError as e:
            logging.getLogger("weft_spark").warning("no live epochs (cannot listen: %s)", e)
            relay = None
        try:
            rows, attempts = self._run_stage(df.repartition(n), job)
        finally:
            if relay is not None:
                relay.close()
        files = {}
        for r in sorted(rows, key=lambda r: (r["name"], r["part"])):
            files[r["name"]] = files.get(r["name"], b"") + bytes(r["data"])
        result = json.loads(files.pop("result.json").decode())
        model = WeftModel(files, result)
        model.attempts = attempts
        model._set(**{p.name: v for p, v in self.extractParamMap().items()
                      if model.hasParam(p.name)})
        return model


def _last_run(runs):
    """The run directory under `runs` with a checkpoint (the one a failed attempt left)."""
    if not runs:
        return None
    found = glob.glob(os.path.join(runs, "*", "*", "checkpoint.safetensors"))
    return os.path.dirname(max(found, key=os.path.getmtime)) if found else None


class WeftModel(Model, _WeftParams, MLReadable, MLWritable):
    """A trained weft model: `transform` adds `prediction` (double) and, for
    classification, `probability` (array<double>, in `classes` order)."""

    def __init__(self, files=None, result=None):
        super().__init__()
        self.files = files or {}
        self.result = result or {}
        self.attempts = 1

    @property
    def preprocess(self):
        return json.loads(self.files["preprocess.json"])

    @property
    def classes(self):
        return self.preprocess.get("classes")

    @property
    def metrics(self):
        """The run's test metrics ({"accuracy": …, "loss": …}), as `weft run --json` gives."""
        return self.result.get("metrics", {})

    def _transform(self, df: DataFrame):
        spark = df.sparkSession
        sc = spark.sparkContext
        keep = list(df.columns)
        features = self._features()
        if features:
            df, _ = _expand(df, features)
        inputs = self.preprocess["inputs"]
        missing = [c for c in inputs if c not in df.columns]
        if missing:
            raise WeftSparkError(f"the DataFrame lacks the model's input columns {missing}; "
                                 f"it has {df.columns}")
        classes = self.classes
        fields = [df.schema[c] for c in keep] + [StructField("prediction", DoubleType(), False)]
        if classes is not None:
            fields.append(StructField("probability", ArrayType(DoubleType()), False))
        job = {
            "files": sc.broadcast(self.files),
            "binary": ship(sc),
            "inputs": inputs,
            "keep": keep,
            "classes": classes,
            "threads": _threads(sc),
        }
        return df.mapInArrow(partial(_tasks.predict_task, job=job), StructType(fields))

    def plan(self):
        """The plan this model trained with (`weft plan` of its run): `str()` is the text,
        and a notebook draws it (the workflow and the compute graph as SVG)."""
        import subprocess
        import tempfile

        from ._binary import find_weft

        with tempfile.TemporaryDirectory(prefix="weft-plan-") as d:
            with open(os.path.join(d, "plan.json"), "wb") as f:
                f.write(self.files["plan.json"])
            out = {fmt: subprocess.run([find_weft(), "plan", d, "--format", fmt],
                                       capture_output=True, text=True, check=True).stdout
                   for fmt in ("text", "svg")}
        return Plan(out["text"], out["svg"])

    def write(self):
        """Spark ML persistence: `model.save(path)`, `model.write().overwrite().save(path)`,
        and inside a saved `PipelineModel` (see `_persist`)."""
        return _persist.ModelWriter(self)

    @classmethod
    def read(cls):
        return _persist.ModelReader(cls)

    def save_folder(self, path):
        """Writes the model's files into the local folder `path`, as a run directory that
        `weft predict --model PATH` reads."""
        _persist.write_folder(self.files, self.result, path)


class Plan:
    """A printed plan: `text` (what `weft plan` prints) and `svg` (drawn in notebooks)."""

    def __init__(self, text, svg):
        self.text = text
        self.svg = svg

    def __str__(self):
        return self.text

    def __repr__(self):
        return self.text

    def _repr_svg_(self):
        return self.svg

"""weft on Apache Spark.

``WeftEstimator(spec=..., num_workers=N).fit(df)`` trains the spec's model in one barrier
stage of N tasks, each a weft worker fed its partition as an Arrow IPC stream on stdin; it
returns a ``WeftModel`` whose ``transform`` scores a DataFrame with ``mapInArrow`` (weft's
predictor on Arrow batches, no Python per row). Both work inside ``pyspark.ml.Pipeline``.

The weft executable comes from ``WEFT_BIN``, then ``PATH``; it is shipped to the executors
with ``SparkContext.addFile`` (see ``_binary``).
"""

from .estimator import WeftEstimator, WeftModel, WeftSparkError

__all__ = ["WeftEstimator", "WeftModel", "WeftSparkError"]

"""Spark ML persistence of weft's models: `WeftModel.save(path)` / `WeftModel.load(path)`
and a fitted `PipelineModel` holding one. The params go in Spark's metadata (as every
Python stage writes them), the model's files (plan, preprocessing, weights) in a Parquet
table of (name, part, bytes) chunks beside it, so any file system Spark writes to
(local, HDFS, S3) holds a saved model.
"""

import json
import os

from pyspark.ml.util import DefaultParamsReader, DefaultParamsWriter, MLReader, MLWriter

from ._binary import WeftSparkError

CHUNK = 8 << 20


def _chunks(files):
    for name, blob in sorted(files.items()):
        for part, start in enumerate(range(0, max(len(blob), 1), CHUNK)):
            yield name, part, bytearray(blob[start:start + CHUNK])


class ModelWriter(MLWriter):
    def __init__(self, instance):
        super().__init__()
        self.instance = instance

    def saveImpl(self, path):
        DefaultParamsWriter.saveMetadata(self.instance, path, self.sparkSession,
                                         extraMetadata={"result": self.instance.result})
        from ._tasks import FILES_SCHEMA

        (self.sparkSession.createDataFrame(list(_chunks(self.instance.files)), FILES_SCHEMA)
         .coalesce(1).write.parquet(os.path.join(path, "data")))


class ModelReader(MLReader):
    def __init__(self, cls):
        super().__init__()
        self.cls = cls

    def load(self, path):
        metadata = DefaultParamsReader.loadMetadata(path, self.sparkSession)
        try:
            rows = self.sparkSession.read.parquet(os.path.join(path, "data")).collect()
        except Exception as e:
            raise WeftSparkError(f"{path} holds no weft model's files ({path}/data: {e})") from e
        files = {}
        for r in sorted(rows, key=lambda r: (r["name"], r["part"])):
            files[r["name"]] = files.get(r["name"], b"") + bytes(r["data"])
        if "model.safetensors" not in files:
            raise WeftSparkError(f"{path} holds no weft model (no model.safetensors in {path}/data)")
        model = self.cls(files, metadata.get("result", {}))
        model._resetUid(metadata["uid"])
        DefaultParamsReader.getAndSetParams(model, metadata)
        return model


def write_folder(files, result, path):
    """The model's files as plain files in the local folder `path` (a run directory
    `weft predict --model` reads), each written atomically."""
    os.makedirs(path, exist_ok=True)
    for name, blob in {**files, "result.json": json.dumps(result).encode()}.items():
        tmp = os.path.join(path, f".{name}.partial")
        with open(tmp, "wb") as f:
            f.write(blob)
        os.replace(tmp, os.path.join(path, name))

"""What runs in the Spark tasks: one weft rank per barrier task (fit), and weft's predictor
on a partition's Arrow batches (transform)."""

import hashlib
import json
import os
import shutil
import tempfile

import pyarrow as pa
import pyarrow.compute as pc

from . import _relay
from ._binary import WeftSparkError, on_executor
from ._process import NoClose, WeftProcess

# The files of a run directory a model needs (and its record of the run).
MODEL_FILES = ("plan.json", "preprocess.json", "model.safetensors", "spec.resolved.json",
               "summary.json", "metrics.jsonl")
CHUNK = 8 << 20
FILES_SCHEMA = "name string, part int, data binary"


def _write_rows(proc, schema, batches):
    """Streams `batches` to the process's stdin as one Arrow IPC stream, in the schema of the
    first batch as Spark sent it (`schema` for a partition without rows). When the process
    stops reading (it refused the rows), raises what it said."""
    it = iter(batches)
    first = next(it, None)
    try:
        writer = pa.ipc.new_stream(NoClose(proc.stdin), schema if first is None else first.schema)
        if first is not None:
            writer.write_batch(first)
        for b in it:
            writer.write_batch(b)
        writer.close()
        proc.stdin.flush()
    except (OSError, pa.ArrowException) as e:
        raise proc.stop("reading its rows") from e


def gpu_env(resources):
    """The environment that puts weft on the GPU Spark gave this task: Spark's `gpu`
    resource address (`spark.task.resource.gpu.amount`) becomes LOCAL_RANK, which weft's
    worker uses to pick among the GPUs it finds (`executor.device: gpu` or `auto`)."""
    gpu = resources.get("gpu") if resources else None
    addresses = list(getattr(gpu, "addresses", None) or [])
    if not addresses:
        return {}
    return {"LOCAL_RANK": str(addresses[0]), "WEFT_SPARK_GPU": ",".join(map(str, addresses))}


def _start(job, rank, world, work, env):
    """Starts this task's `weft spark-task` (the spec written into `work`)."""
    weft = on_executor(job["binary"])
    spec = os.path.join(work, "spec.yaml")
    with open(spec, "w") as f:
        f.write(job["spec"])
    # TMPDIR: weft spools its rows under `work`, which the task removes however weft ended
    # (a killed process cannot remove its own files).
    env = dict(os.environ, RANK=str(rank), WORLD_SIZE=str(world), WEFT_TOKEN=job["token"],
               RAYON_NUM_THREADS=str(job["threads"]), TMPDIR=work, **env)
    args = [weft, "spark-task", spec, "--spec-name", job["spec_name"],
            "--runs-dir", job.get("runs_dir") or os.path.join(work, "runs")]
    if rank == 0 and job.get("resume"):
        args += ["--resume", job["resume"]]
    for s in job["sets"]:
        args += ["--set", s]
    return WeftProcess(args, env, f"weft rank {rank}")


def train_task(batches, job):
    """A barrier task: this partition's rank of the run. Rank 0 yields the model's files.
    Every rank calls allGather exactly once: rank 0 with where it listens, or with why it
    could not start (the other ranks then raise that too, so whichever task Spark reports
    says why)."""
    from pyspark import BarrierTaskContext

    ctx = BarrierTaskContext.get()
    rank = ctx.partitionId()
    gpu = gpu_env(ctx.resources())
    infos = ctx.getTaskInfos()
    world = len(infos)
    master = infos[0].address.rsplit(":", 1)[0]
    schema = pa.ipc.read_schema(pa.py_buffer(job["schema"]))
    work = tempfile.mkdtemp(prefix="weft-task-")
    proc = None
    try:
        if rank == 0:
            try:
                proc = _start(job, 0, world, work, {"MASTER_ADDR": master, "MASTER_PORT": "0", **gpu})
                line = proc.stdout.readline().decode()
                if not line.startswith("weft spark-task: rendezvous "):
                    raise proc.stop("starting")
            except Exception as e:
                said = str(e) if isinstance(e, WeftSparkError) else f"rank 0: {type(e).__name__}: {e}"
                ctx.allGather("failed: " + said[:8000])
                raise
            ctx.allGather(line.split()[-1])
            # Every rank hands its rows over at the same time.
            _write_rows(proc, schema, batches)
            relay = _relay.Sender(job.get("progress"), job["token"])
            result = ""
            for raw in proc.stdout:
                if raw.startswith(_relay.PREFIX):
                    relay.send(raw[len(_relay.PREFIX):])
                else:
                    result = raw.decode()
                    break
            relay.close()
            proc.wait("training")
            yield from _files(json.loads(result)["run_dir"], result)
        else:
            addr = ctx.allGather("")[0]
            if addr.startswith("failed: "):
                raise WeftSparkError(addr[len("failed: "):])
            host, port = addr.rsplit(":", 1)
            proc = _start(job, rank, world, work, {"MASTER_ADDR": host, "MASTER_PORT": port, **gpu})
            _write_rows(proc, schema, batches)
            proc.wait("taking part in the run")
    finally:
        if proc is not None:
            proc.close()
        shutil.rmtree(work, ignore_errors=True)


FILE_SCHEMA = pa.schema([("name", pa.string()), ("part", pa.int32()), ("data", pa.binary())])


def _files(run_dir, result):
    """A run directory's model files as (name, part, bytes) rows, a chunk per batch (memory
    holds one chunk; binary columns take up to 2 GiB a batch)."""
    for name in MODEL_FILES:
        path = os.path.join(run_dir, name)
        if not os.path.exists(path):
            continue
        with open(path, "rb") as f:
            part = 0
            while True:
                chunk = f.read(CHUNK)
                if not chunk and part > 0:
                    break
                yield pa.RecordBatch.from_pydict(
                    {"name": [name], "part": [part], "data": [chunk]}, schema=FILE_SCHEMA)
                part += 1
                if len(chunk) < CHUNK:
                    break
    yield pa.RecordBatch.from_pydict({"name": ["result.json"], "part": [0],
                                      "data": [result.encode()]}, schema=FILE_SCHEMA)


def model_dir(files):
    """The model's files in a folder on this machine (one per model and process)."""
    digest = hashlib.sha256()
    for name in sorted(files):
        digest.update(name.encode())
        digest.update(files[name])
    path = os.path.join(tempfile.gettempdir(), f"weft-model-{digest.hexdigest()[:16]}")
    if not os.path.isdir(path):
        tmp = tempfile.mkdtemp(prefix="weft-model-", dir=tempfile.gettempdir())
        for name, blob in files.items():
            with open(os.path.join(tmp, name), "wb") as f:
                f.write(blob)
        try:
            os.rename(tmp, path)
        except OSError:  # another task made it first
            shutil.rmtree(tmp, ignore_errors=True)
    return path


def predict_task(batches, job):
    """A transform task: every batch through `weft predict --input -`, with the
    predictions appended."""
    files = job["files"].value
    weft = on_executor(job["binary"])
    inputs = job["inputs"]
    keep = job["keep"]
    proc = None
    reader = None
    writer = None
    try:
        for b in batches:
            if proc is None:
                proc = WeftProcess([weft, "predict", "--model", model_dir(files), "--input", "-"],
                                   dict(os.environ, RAYON_NUM_THREADS=str(job["threads"])),
                                   "weft predict")
                writer = pa.ipc.new_stream(NoClose(proc.stdin), b.select(inputs).schema)
            try:
                writer.write_batch(b.select(inputs))
                proc.stdin.flush()
                if reader is None:
                    reader = pa.ipc.open_stream(proc.stdout)
                out = reader.read_next_batch()
            except (OSError, pa.ArrowException, StopIteration) as e:
                raise proc.stop("predicting") from e
            yield pa.RecordBatch.from_arrays(
                [b.column(c) for c in keep] + [_prediction(out, job["classes"]), *_probability(out)],
                names=keep + ["prediction"] + (["probability"] if job["classes"] is not None else []),
            )
        if proc is not None:
            writer.close()
            proc.stdin.close()
            proc.wait("predicting")
    finally:
        if proc is not None:
            proc.close()


def _prediction(out, classes):
    """The `prediction` column as Spark ML has it: a double (the class's value when the
    classes are numbers, as a label column of numbers gives, else its index)."""
    p = out.column("prediction")
    if classes is None:
        return p
    if all(_is_number(c) for c in classes):
        return pc.cast(p, pa.float64())
    return pc.cast(pc.index_in(p, value_set=pa.array(classes)), pa.float64())


def _probability(out):
    if "probability" in out.schema.names:
        return [out.column("probability")]
    return []


def _is_number(s):
    try:
        float(s)
        return True
    except ValueError:
        return False

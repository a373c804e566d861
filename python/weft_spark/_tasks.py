"""What runs in the Spark tasks: one weft rank per barrier task (fit), and weft's predictor
on a partition's Arrow batches (transform)."""

import hashlib
import json
import os
import tempfile

import pyarrow as pa
import pyarrow.compute as pc

from ._binary import WeftSparkError, on_executor
from ._process import NoClose, WeftProcess

# The files of a run directory a model needs (and its record of the run).
MODEL_FILES = ("plan.json", "preprocess.json", "model.safetensors", "spec.resolved.json",
               "summary.json", "metrics.jsonl")
CHUNK = 8 << 20
FILES_SCHEMA = "name string, part int, data binary"


def _write_rows(proc, schema, batches, columns):
    """Streams `batches` (their `columns`) to the process's stdin as one Arrow IPC stream."""
    writer = pa.ipc.new_stream(NoClose(proc.stdin), schema)
    for b in batches:
        writer.write_batch(b.select(columns) if columns else b)
    writer.close()
    proc.stdin.flush()


def train_task(batches, job):
    """A barrier task: this partition's rank of the run. Rank 0 yields the model's files."""
    from pyspark import BarrierTaskContext

    ctx = BarrierTaskContext.get()
    rank = ctx.partitionId()
    infos = ctx.getTaskInfos()
    world = len(infos)
    master = infos[0].address.rsplit(":", 1)[0]
    weft = on_executor(job["binary"])
    work = tempfile.mkdtemp(prefix="weft-task-")
    spec = os.path.join(work, "spec.yaml")
    with open(spec, "w") as f:
        f.write(job["spec"])
    env = dict(os.environ, RANK=str(rank), WORLD_SIZE=str(world), WEFT_TOKEN=job["token"],
               RAYON_NUM_THREADS=str(job["threads"]))
    args = [weft, "spark-task", spec, "--runs-dir", job.get("runs_dir") or os.path.join(work, "runs")]
    if rank == 0 and job.get("resume"):
        args += ["--resume", job["resume"]]
    for s in job["sets"]:
        args += ["--set", s]
    schema = pa.ipc.read_schema(pa.py_buffer(job["schema"]))
    proc = None
    try:
        if rank == 0:
            env.update(MASTER_ADDR=master, MASTER_PORT="0")
            proc = WeftProcess(args, env, "weft rank 0")
            line = proc.stdout.readline().decode()
            if not line.startswith("weft spark-task: rendezvous "):
                proc.proc.wait()
                failure = proc.failure("starting")
                # The other ranks raise it too: whichever task Spark reports, it says why.
                ctx.allGather("failed: " + str(failure)[:8000])
                raise failure
            addr = line.split()[-1]
            ctx.allGather(addr)
            # Every rank hands its rows over at the same time.
            _write_rows(proc, schema, batches, None)
            result = proc.stdout.readline().decode()
            proc.wait("training")
            run_dir = json.loads(result)["run_dir"]
            yield from _files(run_dir, result)
        else:
            addr = ctx.allGather("")[0]
            if addr.startswith("failed: "):
                raise WeftSparkError(addr[len("failed: "):])
            host, port = addr.rsplit(":", 1)
            env.update(MASTER_ADDR=host, MASTER_PORT=port)
            proc = WeftProcess(args, env, f"weft rank {rank}")
            _write_rows(proc, schema, batches, None)
            proc.wait("serving as a worker")
    finally:
        if proc is not None:
            proc.close()


def _files(run_dir, result):
    """A run directory's model files as (name, part, bytes) rows, in chunks."""
    names, parts, data = [], [], []
    for name in MODEL_FILES:
        path = os.path.join(run_dir, name)
        if not os.path.exists(path):
            continue
        with open(path, "rb") as f:
            blob = f.read()
        for i in range(0, max(len(blob), 1), CHUNK):
            names.append(name)
            parts.append(i // CHUNK)
            data.append(blob[i:i + CHUNK])
    names.append("result.json")
    parts.append(0)
    data.append(result.encode())
    yield pa.RecordBatch.from_pydict({"name": names, "part": parts, "data": data},
                                     schema=pa.schema([("name", pa.string()), ("part", pa.int32()),
                                                       ("data", pa.binary())]))


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
            pass
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
            except (OSError, pa.ArrowInvalid, StopIteration):
                proc.proc.wait()
                raise proc.failure("predicting")
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

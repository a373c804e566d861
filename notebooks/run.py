#!/usr/bin/env python3
"""Executes every notebook here with its kernel (evcxr for Rust; the Spark notebook is Python)
and checks what a reader sees.

evcxr does not fail a cell on a panic or a top-level `?` error, so this reads the executed
notebook: any error output, any stderr output (Rust notebooks: Spark's JVM logs there in the
Python one), "panicked at", or an "Error:" line fails it, and each cell's
`metadata.weft` expectation is checked: `svg` (an image/svg+xml output), `accuracy` with
`min` (the HTML metrics show an accuracy >= min), `text` with `contains`.
Executed copies go to target/notebooks/. Ends with `notebooks: N passed, M failed`.
"""
import glob, os, re, sys, time

import nbformat
from nbclient import NotebookClient

HERE = os.path.dirname(os.path.abspath(__file__))
OUT = os.path.join(HERE, "..", "target", "notebooks")


def texts(cell):
    for o in cell.get("outputs", []):
        if o.get("output_type") == "stream":
            yield o.get("name", ""), o.get("text", "")
        for mime, data in o.get("data", {}).items():
            yield mime, data if isinstance(data, str) else "".join(data)


def problems(nb, rust=True):
    out = []
    for i, cell in enumerate(nb.cells):
        if cell.cell_type != "code":
            continue
        where = f"cell {i} ({cell.source.splitlines()[0][:50]!r})"
        for o in cell.get("outputs", []):
            if o.get("output_type") == "error":
                out.append(f"{where}: error output {o.get('ename')}: {o.get('evalue')}")
        for kind, text in texts(cell):
            # A top-level `?` error prints its message on stderr and nothing else: any
            # stderr output is a failure (weft's notebooks print nothing there).
            if (rust and kind == "stderr") or "panicked at" in text or "Traceback (most recent call last)" in text or re.search(r"^(Error|error)(\[E\d+\])?:", text, re.M):
                out.append(f"{where}: {kind} says: {text.strip()[:400]}")
        want = cell.get("metadata", {}).get("weft", {})
        expect = want.get("expect")
        outputs = list(texts(cell))
        if expect == "svg" and not any(k == "image/svg+xml" and "<svg" in t for k, t in outputs):
            out.append(f"{where}: expected an inline SVG")
        elif expect == "accuracy":
            html = " ".join(t for k, t in outputs if k == "text/html")
            found = re.findall(r'class="accuracy(?: test)?">([0-9.]+)<', html)
            if not found:
                out.append(f"{where}: expected an HTML result with an accuracy")
            elif float(found[0]) < want.get("min", 0):
                out.append(f"{where}: accuracy {found[0]} < {want['min']}")
        elif expect == "text" and not any(want["contains"] in t for _, t in outputs):
            out.append(f"{where}: expected output containing {want['contains']!r}")
    return out


def self_check():
    """The checks must catch what evcxr does not fail on: run them on known-bad outputs."""
    v4 = nbformat.v4
    bad = v4.new_notebook(cells=[
        v4.new_code_cell("x", outputs=[v4.new_output("stream", name="stderr", text="thread '<unnamed>' panicked at src/lib.rs:1:1:\nboom")]),
        v4.new_code_cell("y", outputs=[v4.new_output("error", ename="Error", evalue="mismatched types", traceback=[])]),
        v4.new_code_cell("v", outputs=[v4.new_output("stream", name="stderr", text="<spec>:3:39: model[0]: unknown activation")]),
        v4.new_code_cell("z", metadata={"weft": {"expect": "svg"}}, outputs=[]),
        v4.new_code_cell("w", metadata={"weft": {"expect": "accuracy", "min": 0.9}},
                         outputs=[v4.new_output("execute_result", data={"text/html": '<td class="accuracy test">0.5000</td>'})]),
    ])
    found = problems(bad)
    assert len(found) == 5, f"the notebook checks missed problems: {found}"


def main():
    self_check()
    os.makedirs(OUT, exist_ok=True)
    # evcxr.toml points the kernel's build folder here; evcxr expects it to exist.
    os.makedirs(os.path.join(HERE, "..", "target", "evcxr"), exist_ok=True)
    paths = sorted(glob.glob(os.path.join(HERE, "*.ipynb")))
    if len(sys.argv) > 1:
        paths = [p for p in paths if any(a in os.path.basename(p) for a in sys.argv[1:])]
    passed = failed = 0
    for path in paths:
        name = os.path.basename(path)
        nb = nbformat.read(path, as_version=4)
        kernel = nb.metadata.get("kernelspec", {}).get("name", "rust")
        client = NotebookClient(nb, kernel_name=kernel, timeout=1800, allow_errors=True,
                                resources={"metadata": {"path": HERE}})
        started = time.time()
        try:
            client.execute()
            found = problems(nb, rust=kernel == "rust")
        except Exception as e:  # a dead kernel or a timeout
            found = [f"execution failed: {type(e).__name__}: {e}"]
        nbformat.write(nb, os.path.join(OUT, name))
        took = time.time() - started
        if found:
            failed += 1
            print(f"FAIL {name} ({took:.0f}s)")
            for p in found:
                print(f"  {p}")
        else:
            passed += 1
            print(f"ok   {name} ({took:.0f}s)")
    print(f"notebooks: {passed} passed, {failed} failed")
    return 1 if failed or not paths else 0


if __name__ == "__main__":
    sys.exit(main())

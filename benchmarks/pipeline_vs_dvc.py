"""Benchmark: Threadline pipelines against DVC 3.67 pipelines (`dvc repro`), same work, same run.

Both tools are driven through their command lines, as a user would (interpreter start
included), on the same machine and the same Python for the step code:

- **chain**: 10 command steps, each `python sN.py IN OUT` (copy the previous output and mark
  it), every step depending on the one before and on its own script. Timed: the first run,
  a re-run with nothing changed, and a re-run after editing step 5's script (both tools must
  re-run exactly steps 5 to 9, and the script checks that they did).
- **datums**: 1,000 small files, each needing about 2 ms of CPU to process. Threadline runs a
  Python step that declares one datum per file; DVC a stage over the folder (its unit of
  change is the stage: `foreach` would need one stage per file written into dvc.yaml).
  Timed: the first run, then a run after adding 10 files; the script reports how many files
  each tool processed in that run.

Threadline's runs use the local executor with 2 workers (`--workers`); DVC's `repro` runs
stages one at a time. Medians of `--repeat` runs, each on fresh folders.

    .venv/bin/python benchmarks/pipeline_vs_dvc.py --repeat 3
    .venv/bin/python benchmarks/pipeline_vs_dvc.py --quick          # smoke run
    # DVC: `pip install -r benchmarks/requirements.txt` into another venv; --dvc PATH, or on PATH
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
PY = sys.executable
STEP_SCRIPT = textwrap.dedent("""
    import os, pathlib, sys
    src, out = pathlib.Path(sys.argv[1]), pathlib.Path(sys.argv[2])
    out.mkdir(parents=True, exist_ok=True)
    for f in sorted(src.rglob("*")) if src.is_dir() else [src]:
        if f.is_file():
            (out / f.name).write_bytes(f.read_bytes() + b".")
    with open(os.environ["RAN_LOG"], "a") as fh:  # which steps ran (not an argument: Threadline hashes those)
        fh.write(pathlib.Path(sys.argv[0]).stem + "\\n")
""")
WORK = textwrap.dedent("""
    def work(data):
        total = 0
        for i in range({spin}):
            total += (i * len(data)) % 7
        return total
""")
DVC_PER_FILE = WORK + textwrap.dedent("""
    import pathlib, sys
    src, out, log = pathlib.Path(sys.argv[1]), pathlib.Path(sys.argv[2]), pathlib.Path(sys.argv[3])
    out.mkdir(parents=True, exist_ok=True)
    done = 0
    for f in sorted(src.iterdir()):
        (out / (f.name + ".out")).write_text(str(work(f.read_bytes())))
        done += 1
    log.write_text(str(done))
""")
TL_STEPS = WORK + textwrap.dedent("""
    from threadline.pipelines import Input, Output, Pipeline, step

    @step
    def per_file(many=Input("many@main", datums="file"), out=Output()):
        for f in many.rglob("*"):
            if f.is_file():
                (out / (f.name + ".out")).write_text(str(work(f.read_bytes())))

    datums = Pipeline("datums", steps=[per_file])
""")
SPIN = 60_000  # ~2 ms of CPU here


def run(cmd: list[str], cwd: Path, env: dict[str, str]) -> tuple[float, str]:
    """Run a command; (wall seconds, stdout). Raises with its output when it fails."""
    start = time.perf_counter()
    done = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, check=False)
    seconds = time.perf_counter() - start
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed ({done.returncode}):\n{done.stdout}\n{done.stderr}")
    return seconds, done.stdout


def base_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("THREADLINE_")}
    env.update({"DVC_NO_ANALYTICS": "1", "GIT_AUTHOR_NAME": "bench", "GIT_AUTHOR_EMAIL": "bench@localhost",
                "GIT_COMMITTER_NAME": "bench", "GIT_COMMITTER_EMAIL": "bench@localhost",
                "GIT_CONFIG_NOSYSTEM": "1", "GIT_TERMINAL_PROMPT": "0"})
    return env


def write_files(folder: Path, start: int, count: int) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(start, start + count):
        (folder / f"f{i:05d}.txt").write_bytes(b"x" * (i % 13 + 1))


class Dvc:
    """A git + DVC project with the chain stages and the per-file stage in dvc.yaml."""

    name = "dvc"

    def __init__(self, root: Path, exe: Path, files: int, env: dict[str, str]) -> None:
        self.ws, self.exe = root, exe
        self.log = root.parent / "dvc-ran.log"
        self.env = {**env, "RAN_LOG": str(self.log)}
        root.mkdir()
        (root / "raw").mkdir()
        (root / "raw" / "raw.txt").write_text("raw\n")
        write_files(root / "many", 0, files)
        stages: dict[str, dict[str, object]] = {}
        for i in range(10):
            (root / f"s{i}.py").write_text(STEP_SCRIPT)
            src = "raw" if i == 0 else f"st{i - 1}"
            stages[f"s{i}"] = {"cmd": f"{PY} s{i}.py {src} st{i}",
                               "deps": [src, f"s{i}.py"], "outs": [f"st{i}"]}
        (root / "per_file.py").write_text(DVC_PER_FILE.format(spin=SPIN))
        stages["per_file"] = {"cmd": f"{PY} per_file.py many done {root / 'count.txt'}",
                              "deps": ["many", "per_file.py"], "outs": ["done"]}
        import yaml

        (root / "dvc.yaml").write_text(yaml.safe_dump({"stages": stages}, sort_keys=False))
        for cmd in (["git", "init", "-q"], [str(exe), "init", "-q"],
                    [str(exe), "config", "core.analytics", "false"],
                    [str(exe), "config", "core.check_update", "false"],
                    [str(exe), "config", "core.site_cache_dir", str(root / ".site-cache")],
                    ["git", "add", "-A"], ["git", "commit", "-qm", "init"]):
            run(cmd, root, env)

    def chain(self) -> float:
        return run([str(self.exe), "repro", *[f"s{i}" for i in range(10)]], self.ws, self.env)[0]

    def edit_step(self, i: int) -> None:
        (self.ws / f"s{i}.py").write_text(STEP_SCRIPT.replace('b"."', 'b"!"'))  # new output bytes

    def datums(self) -> tuple[float, int]:
        seconds = run([str(self.exe), "repro", "per_file"], self.ws, self.env)[0]
        return seconds, int((self.ws / "count.txt").read_text())

    def add_files(self, start: int, count: int) -> None:
        write_files(self.ws / "many", start, count)


class Threadline:
    """A Threadline home: `raw` and `many` data repos, the chain in threadline.yaml, the datum step
    in a Python module."""

    name = "threadline"

    def __init__(self, root: Path, exe: Path, files: int, env: dict[str, str], workers: int) -> None:
        self.ws, self.exe, self.workers = root, exe, workers
        root.mkdir()
        self.log = root.parent / "threadline-ran.log"
        self.env = {**env, "THREADLINE_HOME": str(root / ".threadline"), "PYTHONPATH": str(root),
                    "RAN_LOG": str(self.log)}
        run([str(exe), "init"], root, self.env)
        steps: dict[str, dict[str, object]] = {}
        for i in range(10):
            (root / f"s{i}.py").write_text(STEP_SCRIPT)
            steps[f"s{i}"] = {"run": f"{PY} s{i}.py {{inputs.x}} {{output}}",
                              "inputs": {"x": "raw@main" if i == 0 else f"step:s{i - 1}"}}
        import yaml

        (root / "threadline.yaml").write_text(yaml.safe_dump({"pipeline": "chain", "steps": steps},
                                                             sort_keys=False))
        (root / "tl_datum_steps.py").write_text(TL_STEPS.format(spin=SPIN))
        (root / "src-raw").mkdir()
        (root / "src-raw" / "raw.txt").write_text("raw\n")
        write_files(root / "src-many", 0, files)
        for name in ("raw", "many"):
            run([str(exe), "data", "create", name], root, self.env)
            self.commit(name)

    def commit(self, name: str) -> None:
        run([str(self.exe), "data", "commit", f"{name}@main", str(self.ws / f"src-{name}"), "-m", "data"],
            self.ws, self.env)

    def chain(self) -> float:
        return run([str(self.exe), "pipeline", "run", "chain", "--workers", str(self.workers)],
                   self.ws, self.env)[0]

    def edit_step(self, i: int) -> None:
        (self.ws / f"s{i}.py").write_text(STEP_SCRIPT.replace('b"."', 'b"!"'))  # new output bytes

    def datums(self) -> tuple[float, int]:
        seconds, out = run([str(self.exe), "pipeline", "run", "--module", "tl_datum_steps", "datums",
                            "--workers", str(self.workers), "--json"], self.ws, self.env)
        steps = json.loads(out)["steps"]
        step = steps["per_file"] if isinstance(steps, dict) else next(s for s in steps
                                                                      if s.get("step") == "per_file")
        return seconds, int(step["processed"])

    def add_files(self, start: int, count: int) -> None:
        write_files(self.ws / "src-many", start, count)
        self.commit("many")


def ran(log: Path) -> list[str]:
    """The steps that ran since the log was last cleared (and clear it)."""
    names = log.read_text().split() if log.exists() else []
    log.unlink(missing_ok=True)
    return names


def one_round(tool: Dvc | Threadline, files: int) -> dict[str, float]:
    out: dict[str, float] = {}
    out["chain, first run"] = tool.chain()
    assert sorted(ran(tool.log)) == [f"s{i}" for i in range(10)], f"{tool.name}: not every step ran"
    out["chain, nothing changed"] = tool.chain()
    assert ran(tool.log) == [], f"{tool.name}: a step re-ran with nothing changed"
    tool.edit_step(5)
    out["chain, step 5's script edited"] = tool.chain()
    again = sorted(ran(tool.log))
    assert again == [f"s{i}" for i in range(5, 10)], f"{tool.name}: re-ran {again}"
    out["datums, first run"], first = tool.datums()
    assert first == files, f"{tool.name} processed {first} of {files} files"
    tool.add_files(files, 10)
    out["datums, 10 files added"], processed = tool.datums()
    out["files processed after adding 10"] = float(processed)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--files", type=int, default=1000)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--dvc", help="dvc executable (default: dvc on PATH, else /tmp/dvcenv/bin/dvc)")
    parser.add_argument("--quick", action="store_true", help="1 repeat, 200 files")
    args = parser.parse_args()
    if args.quick:
        args.repeat, args.files = 1, 200
    dvc = Path(args.dvc or shutil.which("dvc") or "/tmp/dvcenv/bin/dvc")
    if not dvc.exists():
        sys.exit(f"dvc not found at {dvc}: pip install -r benchmarks/requirements.txt (in its own venv) "
                 "and pass --dvc PATH")
    tl = Path(PY).with_name("threadline")
    env = base_env()
    version = run([str(dvc), "--version"], Path.cwd(), env)[1].strip()
    print(f"pipeline_vs_dvc: DVC {version}, {os.cpu_count()} CPUs, {args.files} files, "
          f"Threadline with {args.workers} workers, medians of {args.repeat}")
    results: dict[str, dict[str, list[float]]] = {"threadline": {}, "dvc": {}}
    for r in range(args.repeat):
        work = Path(tempfile.mkdtemp(prefix="tl-bench-pvd-"))
        try:
            order = ["threadline", "dvc"] if r % 2 == 0 else ["dvc", "threadline"]  # first alternates
            for name in order:
                tool = (Threadline(work / name, tl, args.files, env, args.workers) if name == "threadline"
                        else Dvc(work / name, dvc, args.files, env))
                for key, value in one_round(tool, args.files).items():
                    results[name].setdefault(key, []).append(value)
        finally:
            shutil.rmtree(work, ignore_errors=True)
    med = statistics.median
    print("\n| Scenario | Threadline | DVC | DVC / Threadline |\n|---|---|---|---|")
    for key in results["threadline"]:
        t, d = med(results["threadline"][key]), med(results["dvc"][key])
        if key.startswith("files"):
            print(f"| {key} | {t:.0f} | {d:.0f} | - |")
        else:
            print(f"| {key} | {t:.2f} s | {d:.2f} s | {d / t:.2f}x |")


if __name__ == "__main__":
    main()

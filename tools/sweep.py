"""One command runs a whole table: the jobs of the run scripts for several methods, datasets, seeds (and shot
counts), on this machine's CPUs or GPUs, or on a Slurm cluster.

    python tools/sweep.py --protocol base2new --methods coop/atprompt coop/vanilla --datasets caltech101 dtd \\
        --seeds 1 2 3 --data DATA [--output OUTPUT] [--opts KEY VALUE ...] [--jobs N | --gpus 0,1,2,3 | --slurm ...]

The jobs are exactly those the scripts run (tools/run_protocol.py, from the methods' declared families): for each
method variant (`<method>/<variant>`, as `python tools/run_protocol.py --list` names them), dataset, seed and shot
count, the training and, after it, its evaluation (cross-dataset: each target's evaluation after the ImageNet
training of its seed). A job whose folder holds its finished run is skipped, as by the scripts; a failed job is
reported with the last lines of its output and the others go on (those that need it are skipped); a sweep stopped
and started again continues where it was. It ends with the tables of the methods it ran (tools/summarize.py).

Executors:
- local (default): `--jobs N` jobs at a time on the CPU (default 1), or `--gpus 0,1,2,3`: one job per GPU at a
  time. Each slot is one worker process that runs its jobs one after another in-process, so the imports and the
  loaded backbone are paid once per worker, not once per job (the numbers are those of separate processes).
- Slurm through submitit (`pip install submitit`): `--slurm --partition P --time 4:00:00 --gpus-per-job 1`; each
  wave (trainings, then their evaluations) is one array job, `--array-parallelism` at a time, requeued on
  preemption (a training resumes from its checkpoint). `--submitit local` runs the same submission on this machine.

The scripts' environment settings are flags here (--cfg, --epo, --nctx, --weight, --shots, --anchor; --opts for
EXTRA_OPTS, --no-feature-cache, --force), so one sweep has one set of them.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shlex
import signal
import subprocess
import sys
import time
import traceback
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

if __package__ in (None, ""):  # run as a script: make the repository root importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from dassl.utils.errors import UserError  # noqa: E402
from tools import run_protocol  # noqa: E402
from tools.run_protocol import Job, output_root  # noqa: E402
from trainers.method import methods  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
# Flags of the sweep -> the environment variable of the scripts they stand for.
ENVIRONMENT = {"cfg": "CFG", "epo": "EPO", "nctx": "NCTX", "weight": "WEIGHT", "shots": "SHOTS", "anchor": "ANCHOR"}
LOG_TAIL = 12  # lines of a failed job's output shown in the report
FAILED = "train.py ended with exit status"


@dataclass
class Task:
    """One job of the sweep (the `index`-th of `script` with `args`), and the training it needs first (an
    evaluation's)."""

    job: Job
    label: str
    script: str
    args: list[str]
    index: int
    after: Task | None = None
    state: str = "waiting"  # waiting, running, done, skipped, failed, blocked
    seconds: float = 0.0
    detail: str = ""

    @property
    def folder(self) -> str:
        return os.path.join(output_root(), self.job.folder)

    @property
    def log(self) -> Path:
        """The sweep's copy of the job's console output (train.py's own log.txt is in the job's folder)."""
        return Path(output_root()) / "sweep_logs" / (self.job.folder.replace("/", "__") + ".log")

    def refresh(self) -> None:
        """Build the job again now that what it follows has run: an evaluation takes its training's settings and
        folder from the training's record, which did not exist when the sweep was planned."""
        self.job = run_protocol.jobs_of(self.script, self.args)[self.index]


# --------------------------------------------------------------------------------------------------------------
# The jobs
# --------------------------------------------------------------------------------------------------------------
def family_script(method: str, protocol: str) -> tuple[str, dict[str, str]]:
    """The script folder of `<method>/<variant>` and the scripts of its family on `protocol` (stem -> stage)."""
    folder, _, variant = method.partition("/")
    name = "_".join(part for part in (variant, protocol) if part)
    found = [(card, f) for _, card in methods() for f in card.families if card.scripts == folder and f.name == name]
    if not found:
        known = sorted({f"{card.scripts}/{f.variant}" for _, card in methods() for f in card.families
                        if f.protocol == protocol and f.variant})
        raise UserError(f"--methods {method}: no {protocol} scripts; with --protocol {protocol} choose from "
                        f"{', '.join(known)} (python tools/run_protocol.py --list)")
    return folder, found[0][1].script_stages()


def tasks_of(protocol: str, method_names: list[str], datasets: list[str], data: str, seeds: list[str]) -> list[Task]:
    """Every job of the sweep, each evaluation after the training whose model it evaluates."""
    tasks: dict[str, Task] = {}
    for method in method_names:
        folder, stages = family_script(method, protocol)
        for stem, stage in stages.items():
            script = REPO / "scripts" / folder / f"{stem}.sh"
            if protocol == "xd" and stage == "train":
                targets = [[data, *seeds]]
            else:
                targets = [[dataset, data, *seeds] for dataset in datasets]
            for args in targets:
                for index, job in enumerate(run_protocol.jobs_of(str(script), args)):
                    tasks.setdefault(job.folder, Task(job, label(method, protocol, job), str(script), args, index))
    for task in tasks.values():  # an evaluation comes after the training that writes its --model-dir
        if "--model-dir" in task.job.argv:
            model_dir = task.job.argv[task.job.argv.index("--model-dir") + 1]
            task.after = next((t for t in tasks.values() if t.folder == model_dir), None)
    return sorted(tasks.values(), key=lambda t: t.after is not None)


def label(method: str, protocol: str, job: Job) -> str:
    """E.g. "coop/atprompt train caltech101, seed 1" (and the shots of a few-shot job)."""
    def value(flag: str) -> str:
        return job.argv[job.argv.index(flag) + 1]

    dataset = Path(value("--dataset-config-file")).stem
    shots = f", {value('DATASET.NUM_SHOTS')} shots" if protocol == "fewshot" else ""
    return f"{method} {job.kind} {dataset}, seed {value('--seed')}{shots}"


# --------------------------------------------------------------------------------------------------------------
# Progress and the report
# --------------------------------------------------------------------------------------------------------------
@dataclass
class Progress:
    tasks: list[Task]
    slots: int
    started: float = field(default_factory=time.monotonic)

    def count(self, *states: str) -> int:
        return sum(task.state in states for task in self.tasks)

    def line(self) -> str:
        ran = [task.seconds for task in self.tasks if task.state == "done"]
        left = self.count("waiting", "running")
        eta = ""
        if ran:
            remaining = sum(ran) / len(ran) * left / max(1, min(self.slots, left or 1))
            hours, rest = divmod(round(remaining), 3600)
            eta = f", ETA {hours}:{rest // 60:02d}:{rest % 60:02d}"
        return (f"[sweep] {self.count('done', 'skipped')} done ({self.count('skipped')} already), "
                f"{self.count('running')} running, {self.count('failed', 'blocked')} failed, {left} left{eta}")


def tail(path: Path, lines: int = LOG_TAIL) -> str:
    try:
        text = path.read_text(errors="replace").splitlines()
    except OSError:
        return "(no output)"
    return "\n".join("    " + line for line in text[-lines:])


def report(tasks: list[Task]) -> int:
    """Print what failed (and why), what waits on it; return the exit status of the sweep."""
    failed = [task for task in tasks if task.state == "failed"]
    for task in failed:
        print(f"\nFAILED {task.label} ({task.detail}); the end of {task.log}:\n{tail(task.log)}")
    blocked = [task for task in tasks if task.state == "blocked"]
    if blocked:
        print(f"\nNot run, since the training they evaluate failed: {', '.join(t.label for t in blocked)}")
    unfinished = [task for task in tasks if task.state in ("waiting", "running")]
    if unfinished:
        print(f"\n{len(unfinished)} jobs did not run: start the same command again to continue")
    return 1 if failed or blocked or unfinished else 0


def print_tables(tasks: list[Task]) -> None:
    """The result tables of the methods this sweep ran (from their records), as tools/summarize.py prints them."""
    from dassl.engine.records import read_record
    from tools import results, summarize

    labels = {(read_record(task.folder) or {}).get("method") for task in tasks if task.state in ("done", "skipped")}
    labels.discard(None)
    if not labels:
        return
    try:
        summary = results.summarize(output_root(), methods=sorted(labels, key=results.method_order))
    except results.ResultsError as err:
        print(f"\nNo table: {err}")
        return
    print()
    print(summarize.render_markdown(summary))


# --------------------------------------------------------------------------------------------------------------
# Local executor: one worker process per slot, jobs in-process
# --------------------------------------------------------------------------------------------------------------
def serve() -> int:
    """A worker: read jobs (JSON lines: train.py arguments and a log path) from stdin, run each with train.main in
    this process (its console output into the log), answer each with its exit status on stdout."""
    import train  # once per worker: the imports are the largest part of a short job

    # The sweep's stop request (SIGINT) goes to the job running, as a Ctrl+C to train.py would (which saves and
    # stops once training has begun); one that comes between jobs stops the next.
    state = {"in_job": False, "stopped": False}

    def interrupt(signum: int, frame: object) -> None:
        if state["in_job"]:
            raise KeyboardInterrupt
        state["stopped"] = True

    signal.signal(signal.SIGINT, interrupt)
    channel = os.fdopen(os.dup(1), "w", buffering=1)
    for line in sys.stdin:
        request = json.loads(line)
        started = time.monotonic()
        log = Path(request["log"])
        log.parent.mkdir(parents=True, exist_ok=True)
        with open(log, "a") as out, redirected(out):
            try:
                state["in_job"] = not state["stopped"]
                code = train.main(request["argv"]) if state["in_job"] else 130
            except KeyboardInterrupt:
                code = 130
            except BaseException:  # a bug in one job must not take the worker's later jobs with it
                traceback.print_exc()
                code = 1
            finally:
                state["in_job"] = False
        channel.write(json.dumps({"code": code, "seconds": time.monotonic() - started}) + "\n")
    return 0


@contextlib.contextmanager
def redirected(out: TextIO) -> Iterator[None]:
    """stdout and stderr (the file descriptors too, for what C code and subprocesses write) into `out`."""
    sys.stdout.flush()
    sys.stderr.flush()
    saved = os.dup(1), os.dup(2)
    os.dup2(out.fileno(), 1)
    os.dup2(out.fileno(), 2)
    try:
        yield
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        os.dup2(saved[0], 1)
        os.dup2(saved[1], 2)
        os.close(saved[0])
        os.close(saved[1])


class Worker:
    """A worker process (with its slot's environment) and the task it runs."""

    def __init__(self, env: dict[str, str]) -> None:
        self.env = env
        # Its own session: a Ctrl+C in the terminal reaches the sweep alone, which then asks each busy worker once
        # to stop after its batch and save (a second signal would abort the run without saving).
        self.process = subprocess.Popen([sys.executable, str(Path(__file__).resolve()), "--serve"],
                                        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
                                        env={**os.environ, **env}, start_new_session=True)
        self.task: Task | None = None

    def send(self, argv: list[str], log: Path) -> None:
        """Start train.py with `argv` in the worker, its console output into `log`."""
        log.parent.mkdir(parents=True, exist_ok=True)
        self.process.stdin.write(json.dumps({"argv": argv, "log": str(log)}) + "\n")
        self.process.stdin.flush()

    def receive(self) -> tuple[int | None, float]:
        """The exit status and the seconds of the job sent last (None: the worker died)."""
        answer = self.process.stdout.readline()
        if not answer:
            return None, 0.0
        result = json.loads(answer)
        return result["code"], result["seconds"]

    def start(self, task: Task) -> None:
        task.state, task.detail = "running", ""
        self.task = task
        self.send(run_protocol.train_argv(task.job), task.log)

    def finish(self) -> Task:
        task, self.task = self.task, None
        code, task.seconds = self.receive()
        if code is None:
            task.state, task.detail = "failed", f"its worker ended (exit status {self.process.wait()})"
        else:
            task.state, task.detail = ("done" if code == 0 else "failed"), f"exit status {code}"
        return task

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.process.stdin.close()
        self.process.wait()


def run_local(tasks: list[Task], slots: list[dict[str, str]]) -> None:
    """Run the tasks on `slots` workers (each slot's environment: a GPU, or nothing for the CPU)."""
    import selectors

    progress = Progress(tasks, len(slots))
    pending = deque(tasks)
    idle = [Worker(env) for env in slots]
    busy: list[Worker] = []
    selector = selectors.DefaultSelector()
    try:
        while pending or busy:
            started = False
            for task in list(pending):  # finished ones are skipped at once, whether a worker is free or not
                if task.after is not None and task.after.state in ("failed", "blocked"):
                    pending.remove(task)
                    task.state = "blocked"
                    continue
                if task.after is not None and task.after.state not in ("done", "skipped"):
                    continue
                if not needs_running(task):
                    pending.remove(task)
                    continue
                if not idle:
                    break
                pending.remove(task)
                worker = idle.pop()
                worker.start(task)
                selector.register(worker.process.stdout, selectors.EVENT_READ, worker)
                busy.append(worker)
                started = True
                print(f"[sweep] start {task.label}", flush=True)
            if started:
                print(progress.line(), flush=True)
            if not busy:
                continue
            for key, _ in selector.select():
                worker = key.data
                selector.unregister(worker.process.stdout)
                busy.remove(worker)
                task = worker.finish()
                idle.append(worker if worker.process.poll() is None else Worker(worker.env))  # replace a dead one
                print(f"[sweep] {task.state} {task.label} ({task.seconds:.0f} s)", flush=True)
                print(progress.line(), flush=True)
    finally:
        for worker in busy:  # stopped: their runs save where they are, as after Ctrl+C
            worker.process.send_signal(signal.SIGINT)
        for worker in idle + busy:
            worker.close()


def needs_running(task: Task) -> bool:
    """Whether a task runs; a finished one is skipped, and one whose folder holds other settings fails here."""
    try:
        if task.after is not None:
            task.refresh()
        if run_protocol.to_run(task.job):
            return True
        task.state = "skipped"
    except UserError as err:
        task.state, task.detail = "failed", err.message
        task.log.parent.mkdir(parents=True, exist_ok=True)
        task.log.write_text(f"error: {err.message}\n")
    return False


# --------------------------------------------------------------------------------------------------------------
# Slurm (and its local stand-in) through submitit
# --------------------------------------------------------------------------------------------------------------
_TRAINING: list[subprocess.Popen] = []  # the train.py process of the Slurm job running here


class SubmittedJob:
    """What a Slurm job runs: one task's train.py, in a process of its own. Requeued when preempted or out of
    time (submitit calls `checkpoint`): train.py is stopped as by Ctrl+C, saves where it is, and the requeued job
    resumes it from there."""

    def __init__(self, argv: list[str], log: str, env: dict[str, str]) -> None:
        self.argv, self.log, self.env = argv, log, env

    def __call__(self) -> int:
        Path(self.log).parent.mkdir(parents=True, exist_ok=True)
        with open(self.log, "a") as out:
            process = subprocess.Popen([*run_protocol.launcher(), str(REPO / "train.py"), *self.argv], stdout=out,
                                       stderr=subprocess.STDOUT, env={**os.environ, **self.env})
            _TRAINING[:] = [process]
            code = process.wait()
        if code:
            raise RuntimeError(f"{FAILED} {code}")
        return code

    def checkpoint(self, *args: Any, **kwargs: Any) -> Any:
        """submitit's hook on preemption or timeout: the running training saves where it is, and the job is
        requeued (it resumes from that checkpoint)."""
        import submitit

        for process in _TRAINING:
            process.send_signal(signal.SIGINT)
            process.wait(timeout=120)
        return submitit.helpers.DelayedSubmission(SubmittedJob(self.argv, self.log, self.env))


def submitit_executor(args: argparse.Namespace) -> Any:
    try:
        import submitit
    except ImportError:
        raise UserError("the Slurm executor needs submitit: pip install submitit") from None
    folder = Path(output_root()) / "sweep_slurm"
    if args.submitit:
        executor = submitit.AutoExecutor(folder=folder, cluster=args.submitit)
        executor.update_parameters(timeout_min=args.time_minutes)
        return executor
    try:
        executor = submitit.AutoExecutor(folder=folder, cluster="slurm")
    except RuntimeError as err:  # submitit finds no srun
        raise UserError(f"--slurm: this machine has no Slurm ({err}); start the sweep on the cluster, or try the "
                        "submission here with --submitit local") from None
    executor.update_parameters(
        name="atprompt-sweep", timeout_min=args.time_minutes, gpus_per_node=args.gpus_per_job,
        cpus_per_task=args.cpus_per_job, mem_gb=args.mem_gb, slurm_partition=args.partition,
        slurm_array_parallelism=args.array_parallelism, slurm_use_srun=False,
        slurm_additional_parameters=args.slurm_options,
    )
    return executor


def run_submitit(tasks: list[Task], executor: Any) -> None:
    """Submit each wave as one array job (trainings, then the evaluations of those that succeeded) and wait."""
    progress = Progress(tasks, len(tasks))
    env = {key: os.environ[key] for key in ("OUTPUT", "FEATURE_CACHE", "PYTHON", "LAUNCH") if key in os.environ}
    waves = [[t for t in tasks if t.after is None], [t for t in tasks if t.after is not None]]
    for wave in waves:
        todo = []
        for task in wave:
            if task.after is not None and task.after.state not in ("done", "skipped"):
                task.state = "blocked"
            elif needs_running(task):
                todo.append(task)
        if not todo:
            continue
        jobs = executor.submit_array([SubmittedJob(run_protocol.train_argv(t.job), str(t.log), env) for t in todo])
        for task, job in zip(todo, jobs):
            task.state, task.detail = "running", f"job {job.job_id}"
        print(f"[sweep] submitted {len(todo)} jobs as {jobs[0].job_id.split('_')[0]}", flush=True)
        print(progress.line(), flush=True)
        for task, job in zip(todo, jobs):
            started = time.monotonic()
            try:
                job.result()
                task.state = "done"
            except Exception as err:  # the job failed: submitit raises its error, ours inside its own text
                lines = str(err).splitlines() or [type(err).__name__]
                why = next((line for line in reversed(lines) if line.startswith(f"RuntimeError: {FAILED}")), lines[0])
                task.state, task.detail = "failed", f"job {job.job_id}: {why.removeprefix('RuntimeError: ')}"
            task.seconds = time.monotonic() - started
            print(f"[sweep] {task.state} {task.label}", flush=True)
            print(progress.line(), flush=True)


# --------------------------------------------------------------------------------------------------------------
# The command line
# --------------------------------------------------------------------------------------------------------------
def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--protocol", required=True, choices=["base2new", "xd", "fewshot", "anchor"])
    parser.add_argument("--methods", nargs="+", required=True, metavar="METHOD/VARIANT",
                        help="e.g. coop/atprompt coop/vanilla maple/anchoropt (python tools/run_protocol.py --list)")
    parser.add_argument("--datasets", nargs="+", default=[], metavar="DATASET",
                        help="config keys (caltech101, dtd, ...); cross-dataset: the targets")
    parser.add_argument("--seeds", nargs="+", default=["1", "2", "3"])
    parser.add_argument("--data", default=os.environ.get("DATA", "data"), help="the data root (default ./data)")
    parser.add_argument("--output", default=os.environ.get("OUTPUT", "output"), help="the output root")
    parser.add_argument("--opts", nargs=argparse.REMAINDER, default=[],
                        help="KEY VALUE config options for every job (as EXTRA_OPTS); must come last")
    for flag, name in ENVIRONMENT.items():
        parser.add_argument(f"--{flag}", help=f"the scripts' {name}")
    parser.add_argument("--no-feature-cache", action="store_true", help="as FEATURE_CACHE=0")
    parser.add_argument("--force", action="store_true", help="run jobs whose runs finished already (FORCE=1)")
    parser.add_argument("--dry-run", action="store_true", help="list the jobs without running them")
    where = parser.add_mutually_exclusive_group()
    where.add_argument("--jobs", type=int, default=1, help="jobs at a time on this machine (default 1)")
    where.add_argument("--gpus", help="comma-separated GPU ids: one job per GPU at a time")
    where.add_argument("--slurm", action="store_true", help="submit to Slurm with submitit")
    where.add_argument("--submitit", choices=["local", "debug"],
                       help="submitit's executor of this machine (separate processes, or this one): to try a sweep")
    slurm = parser.add_argument_group("Slurm")
    slurm.add_argument("--partition")
    slurm.add_argument("--time", default="4:00:00",
                       help="time limit per job: minutes or HOURS:MINUTES:SECONDS (default 4:00:00)")
    slurm.add_argument("--gpus-per-job", type=int, default=1)
    slurm.add_argument("--cpus-per-job", type=int, default=8)
    slurm.add_argument("--mem-gb", type=int, default=32)
    slurm.add_argument("--array-parallelism", type=int, default=32, help="array jobs running at a time")
    slurm.add_argument("--slurm-arg", action="append", default=[], metavar="KEY=VALUE",
                       help="any other sbatch option, e.g. account=myproject (repeatable)")
    return parser


def minutes(text: str) -> int:
    """Slurm's time forms MINUTES, MINUTES:SECONDS and HOURS:MINUTES:SECONDS, in whole minutes (seconds round up)."""
    try:
        parts = [int(part) for part in text.split(":")]
    except ValueError:
        parts = []
    if not 1 <= len(parts) <= 3 or min(parts) < 0:
        raise UserError(f"--time {text}: give minutes, MINUTES:SECONDS or HOURS:MINUTES:SECONDS (e.g. 90 or 4:00:00)")
    hours, mins, secs = [0, *parts, 0] if len(parts) == 1 else [0, *parts] if len(parts) == 2 else parts
    return max(1, hours * 60 + mins + (secs > 0))


def slurm_options(pairs: list[str]) -> dict[str, str]:
    """--slurm-arg KEY=VALUE options as sbatch parameters."""
    bad = [pair for pair in pairs if "=" not in pair or pair.startswith("=")]
    if bad:
        raise UserError(f"--slurm-arg {bad[0]}: give an sbatch option as KEY=VALUE, e.g. --slurm-arg account=myproject")
    return dict(pair.split("=", 1) for pair in pairs)


def set_environment(args: argparse.Namespace) -> None:
    """The scripts' environment from the flags, so the jobs are those the scripts would run."""
    os.environ["OUTPUT"] = args.output
    for flag, name in ENVIRONMENT.items():
        if getattr(args, flag):
            os.environ[name] = getattr(args, flag)
    if args.opts:
        os.environ["EXTRA_OPTS"] = shlex.join(args.opts)
    if args.no_feature_cache:
        os.environ["FEATURE_CACHE"] = "0"
    if args.force:
        os.environ["FORCE"] = "1"


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv == ["--serve"]:
        return serve()
    args = build_parser().parse_args(argv)
    try:
        if args.protocol != "xd" and not args.datasets:
            raise UserError(f"--datasets: which datasets the {args.protocol} jobs run on, e.g. caltech101 dtd")
        args.time_minutes, args.slurm_options = minutes(args.time), slurm_options(args.slurm_arg)
        set_environment(args)
        tasks = tasks_of(args.protocol, args.methods, args.datasets, args.data, args.seeds)
        if args.dry_run:
            for task in tasks:
                after = f" (after {task.after.job.folder})" if task.after else ""
                print(f"{task.job.kind} {task.job.folder}{after}")
            return 0
        print(f"[sweep] {len(tasks)} jobs", flush=True)
        if args.slurm or args.submitit:
            run_submitit(tasks, submitit_executor(args))
        else:
            gpus = [g for g in (args.gpus or "").split(",") if g.strip()]
            slots = [{"CUDA_VISIBLE_DEVICES": g} for g in gpus] or [{} for _ in range(max(1, args.jobs))]
            run_local(tasks, slots)
    except UserError as err:
        print(f"error: {err.message}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("\n[sweep] stopped; start the same command again to continue", file=sys.stderr)
        return 130
    status = report(tasks)
    print_tables(tasks)
    return status


if __name__ == "__main__":
    signal.signal(signal.SIGTERM, signal.default_int_handler)  # a kill stops the sweep as Ctrl+C does
    sys.exit(main())

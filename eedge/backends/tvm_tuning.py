"""MetaSchedule tuning of a bundle's TVM stages, on this machine or over TVM RPC.

Why in-process: TVM's stock builder and runner start pools of worker
processes that each import TVM (seconds apiece) and kill them after a
timeout; on a small, busy machine they spend the trial budget restarting.
Here candidates are compiled and timed in this process (locally), or timed on
the device through one RPC session (the one the profiler opens), so the
trial budget goes to measuring schedules.

The tuning database is TVM's JSON database (one workload file, one record
file). Records are appended as they are measured, so an interrupted run
(Ctrl-C) still leaves every finished trial; the caller copies the files into
the bundle atomically and records them with checksums.

Tuning is done at batch 1, the latency case of an edge device: MetaSchedule
only tunes static shapes, so tuned libraries are compiled with the batch
bound to 1 and the runner feeds larger batches row by row.
"""

from __future__ import annotations

import json
import os
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from eedge.errors import BundleError, ModelError, TargetError, ToolchainError

WORKLOAD_FILE = "database_workload.json"
RECORD_FILE = "database_tuning_record.json"
TUNED_BATCH = 1
# Search settings, measured on the residual 96x96 model (3 stages, 48 trials each, 1
# thread, host; see README "Apache TVM"):
# - kernels under this share of the stage's largest kernel's FLOPs are not tuned
#   (reshapes, tiny heads). 0.02 left out the 2x2 average pools (about 1% of a conv's
#   FLOPs but memory-bound): 50 us each untuned, a fifth of a tuned stage; 25 us tuned.
MIN_FLOP_SHARE = 0.005
# - trials measured per round; small, so the gradient scheduler can move the budget
#   between a stage's kernels (a pool plateaus after a round, convolutions do not)
TRIALS_PER_ITER = 8
TASK_SCHEDULER = "gradient"
# - replay-trace with a random cost model: evolutionary search with XGBoost found
#   kernels no faster at this budget (best kernel sum 0.71 vs 0.72 ms) and took 560 s
#   instead of 130 s: its population of 512 candidates per round costs more than the
#   48 trials it ranks
STRATEGY = "replay-trace"
COST_MODEL = "random"

Report = Callable[[int, int, float | None], None]
"""``report(trials_done, trials_total, best_ms_so_far)`` after each measured batch."""


@dataclass
class TuningStats:
    """What one tuning run did: trials measured and the best stage latency estimate."""

    trials: int = 0
    seconds: float = 0.0
    best_us: dict[str, float] = field(default_factory=dict)  # stage:task -> best run time
    interrupted: bool = False  # Ctrl-C (KeyboardInterrupt) arrived while measuring

    def best_ms(self) -> float | None:
        return sum(self.best_us.values()) / 1e3 if self.best_us else None


def import_ms() -> Any:
    from eedge.backends.tvm_compiler import import_tvm

    import_tvm()
    from tvm.s_tir import meta_schedule as ms

    from eedge.backends.tvm_fast_import import import_tensor_intrinsics

    import_tensor_intrinsics()  # TuneContext imports them: minutes in a deep stack otherwise
    _register_plain_pool_rule()
    return ms


def _register_plain_pool_rule() -> None:
    """TOPI marks pooling blocks with ``schedule_rule="meta_schedule.pool_avg"``, for which
    TVM ships no CPU rule: MetaSchedule then leaves the block to the post-processors
    (parallel, vectorize, unroll: 50 -> 25 µs on the 2x2 pools) and prints a C++ warning
    per task into the CLI's output. This rule does the same, without the warning."""
    import tvm

    for kind in ("pool_avg", "pool_max"):
        name = f"s_tir.meta_schedule.cpu.meta_schedule.{kind}"
        if tvm.get_global_func(name, allow_missing=True) is None:
            tvm.register_global_func(name, lambda sch, _block: [sch])


def prepare_module(onnx_path: Path, tvm_target: Any, batch: int | None) -> Any:
    """ONNX stage -> Relax, batch bound, legalized and fused (the form tasks are keyed on).

    Extracting tasks and applying the database must see the same fused TIR, so
    both start from this module.
    """
    import tvm
    from tvm import relax

    from eedge.backends.tvm_compiler import import_onnx_module

    mod = import_onnx_module(onnx_path)
    if batch is not None:
        # The batch is *defined* by main's parameters (not free in it). Left symbolic,
        # every kernel is a dynamic-shape task, which MetaSchedule cannot tune: its
        # traces fail to replay ("old_rv != nullptr && new_rv != nullptr"), 0 trials.
        names = {str(v) for v in relax.analysis.defined_symbolic_vars(mod["main"])}
        mod = relax.transform.BindSymbolicVars({n: batch for n in names})(mod)
    with tvm_target:
        return tvm.transform.Sequential([
            relax.transform.DecomposeOpsForInference(),
            relax.transform.CanonicalizeBindings(),
            *relax.backend.cpu_generic.library_dispatch_passes(tvm_target),
            relax.transform.LegalizeOps(),
            relax.transform.AnnotateTIROpPattern(),
            relax.transform.FoldConstant(),
            relax.transform.FuseOps(),
            relax.transform.FuseTIR(),
        ])(mod)


def _space(ms: Any) -> Any:
    # Explicit rule lists for a CPU (LLVM) target, whatever the target's host.
    return ms.space_generator.PostOrderApply(sch_rules="llvm", postprocs="llvm",
                                             mutator_probs="llvm")


def _selected_tasks_flops(ms: Any, mod: Any, tvm_target: Any) -> list[tuple[Any, float]]:
    """The stage's kernels worth tuning (see MIN_FLOP_SHARE), with their FLOPs."""
    from tvm.s_tir.analysis import estimate_tir_flops

    tasks = ms.relax_integration.extract_tasks(mod, tvm_target)
    flops = [float(estimate_tir_flops(t.dispatched[0])) for t in tasks]
    top = max(flops, default=0.0)
    return [(t, f) for t, f in zip(tasks, flops) if top > 0 and f >= MIN_FLOP_SHARE * top]


def stage_budgets(kernel_flops: list[list[float]], trials: int) -> list[int]:
    """Split ``trials`` per stage (on average) over the stages by the work they hold.

    Each stage first gets a round per kernel it tunes (up to ``trials``); the rest
    goes by FLOPs. Equal budgets starved the heaviest stage: the residual 96x96
    model's last stage has two of its four convolutions, which got ~20 trials each
    and ran 2.5x slower than the one conv of stage 1 with ~40.
    """
    total = trials * len(kernel_flops)
    budgets = [min(TRIALS_PER_ITER * len(flops), trials) for flops in kernel_flops]
    weights = [sum(flops) for flops in kernel_flops]
    rest = total - sum(budgets)
    if rest <= 0 or sum(weights) <= 0:
        return budgets
    shares = [rest * w / sum(weights) for w in weights]
    extra = [int(share) for share in shares]
    # largest remainders first, so the budgets add up to the total
    order = sorted(range(len(shares)), key=lambda k: extra[k] - shares[k])
    for k in order[:rest - sum(extra)]:
        extra[k] += 1
    return [b + e for b, e in zip(budgets, extra)]


def stage_tasks(onnx_path: Path, tvm_target: Any) -> list[tuple[Any, float]]:
    """The kernels of a stage that tuning takes on, with their FLOPs (the stage is
    imported once: tune_bundle budgets by the FLOPs and tunes the same tasks)."""
    ms = import_ms()
    mod = prepare_module(onnx_path, tvm_target, TUNED_BATCH)
    return _selected_tasks_flops(ms, mod, tvm_target)


def _tune_contexts(ms: Any, tasks: list[Any]) -> tuple[list[Any], list[float]]:
    """TVM's extracted_tasks_to_tune_contexts, with eedge's loggers.

    TVM's version reconfigures Python logging per work directory (dictConfig
    of file and console handlers), which breaks when another library or a test
    runner has attached handlers of its own; eedge's loggers stay quiet.
    """
    import logging

    from tvm.s_tir.meta_schedule.utils import fork_seed

    contexts = [ms.TuneContext(mod=task.dispatched[0], target=task.target,
                               space_generator=_space(ms), search_strategy=STRATEGY,
                               task_name=task.task_name,
                               logger=logging.getLogger(f"eedge.tvm_tuning.{task.task_name}"),
                               rand_state=seed, num_threads=1).clone()
                for task, seed in zip(tasks, fork_seed(0, n=len(tasks)))]
    return contexts, [float(task.weight) for task in tasks]


def trials_per_round(trials: int, tasks: int) -> int:
    """Candidates measured per task per round: small enough that every task gets one.

    The task scheduler gives a round to each task in turn before it picks by gain;
    with rounds of TRIALS_PER_ITER, 16 trials over a stage's 3 kernels reached two
    of them, and the third (a convolution) was compiled unscheduled at batch 1:
    4.6x ONNX Runtime's time on that stage instead of 0.4x.
    """
    return max(1, min(TRIALS_PER_ITER, trials // max(tasks, 1)))


class _Interrupted(Exception):
    """Carries a KeyboardInterrupt out through TVM's C++ task scheduler."""


def _ms_classes(ms: Any) -> tuple[type, type, type, type]:
    """The in-process builder, runner (local or RPC) and progress callback.

    Defined on first use because their bases come from TVM, an optional extra.
    """
    from tvm.ir.utils import derived_object
    from tvm.s_tir.meta_schedule.builder import BuilderResult, PyBuilder
    from tvm.s_tir.meta_schedule.builder.local_builder import default_build
    from tvm.s_tir.meta_schedule.measure_callback import PyMeasureCallback
    from tvm.s_tir.meta_schedule.runner import PyRunner, PyRunnerFuture, RunnerResult

    # candidates built for a local runner stay in memory (path -> module): linking and
    # reloading a shared library cost a fifth of the tuning time
    built: dict[str, Any] = {}

    @derived_object
    class InProcessBuilder(PyBuilder):
        def __init__(self, workdir: str, cc: str | None, in_memory: bool = False) -> None:
            super().__init__()
            self.workdir, self.cc, self.count, self.in_memory = workdir, cc, 0, in_memory

        def build(self, build_inputs: list[Any]) -> list[Any]:
            results = []
            for item in build_inputs:
                self.count += 1
                # one directory per candidate: MetaSchedule's remove-build-artifact
                # callback deletes the directory holding each measured artifact
                folder = tempfile.mkdtemp(prefix=f"c{self.count}-", dir=self.workdir)
                path = os.path.join(folder, "candidate.so")
                try:
                    module = default_build(item.mod, item.target, None)
                    if self.in_memory:
                        built[path] = module
                    else:
                        module.export_library(path, **({"cc": self.cc} if self.cc else {}))
                    results.append(BuilderResult(path, None))
                except Exception as exc:  # a candidate that does not build is a failed trial
                    results.append(BuilderResult(None, str(exc).splitlines()[0][:300]))
            return results

    @derived_object
    class DoneFuture(PyRunnerFuture):
        def __init__(self, result: Any) -> None:
            super().__init__()
            self._result = result

        def done(self) -> bool:
            return True

        def result(self) -> Any:
            return self._result

    @derived_object
    class InProcessRunner(PyRunner):
        """Times each candidate with TVM's time_evaluator, here or on the RPC device."""

        def __init__(self, session: Any | None, number: int, repeat: int) -> None:
            super().__init__()
            self.session, self.number, self.repeat = session, number, repeat

        def run(self, runner_inputs: list[Any]) -> list[Any]:
            import tvm

            from eedge.runtime.tvm_runner import set_tvm_threads

            futures = []
            rng = np.random.default_rng(0)
            if self.session is None:
                set_tvm_threads(tvm, 1)  # tuned for one core ("num-cores": 1), timed on one
            for item in runner_inputs:
                try:
                    if self.session is None:
                        device = tvm.cpu()
                        module = built.pop(item.artifact_path, None) or \
                            tvm.runtime.load_module(item.artifact_path)
                    else:
                        from eedge.backends.tvm_rpc_tuning import load_candidate

                        device = self.session.cpu()
                        module = load_candidate(self.session, item.artifact_path)
                    args = []
                    for info in item.args_info:
                        _, dtype, shape = info.as_json()
                        data = rng.uniform(-1, 1, [int(d) for d in shape]).astype(str(dtype))
                        args.append(tvm.runtime.tensor(data, device))
                    timer = module.time_evaluator(module.entry_name, device, number=self.number,
                                                  repeat=self.repeat, min_repeat_ms=20)
                    costs = [float(c) for c in timer(*args).results]
                    futures.append(DoneFuture(RunnerResult(costs, None)))
                except Exception as exc:
                    if self.session is not None:  # a lost session is no failed candidate
                        from eedge.backends.tvm_rpc_tuning import check_session

                        check_session(self.session, str(exc))
                    futures.append(DoneFuture(RunnerResult(None,
                                                           str(exc).splitlines()[0][:300])))
            return futures

    @derived_object
    class ProgressCallback(PyMeasureCallback):
        def __init__(self, stats: TuningStats, total: int, report: Report, stage: str) -> None:
            super().__init__()
            self.stats, self.total, self.report, self.stage = stats, total, report, stage

        def apply(self, task_scheduler: Any, task_id: int, measure_candidates: list[Any],
                  builder_results: list[Any], runner_results: list[Any]) -> None:
            for result in runner_results:
                self.stats.trials += 1
                if result.run_secs:
                    us = float(np.mean([float(s) for s in result.run_secs])) * 1e6
                    key = f"{self.stage}:{task_id}"  # task ids restart at 0 per stage
                    best = self.stats.best_us.get(key)
                    self.stats.best_us[key] = us if best is None else min(best, us)
            try:
                self.report(self.stats.trials, self.total, self.stats.best_ms())
            except KeyboardInterrupt as exc:
                # TVM's FFI turns exceptions into a bare RuntimeError on the way out
                self.stats.interrupted = True
                raise _Interrupted() from exc

    return InProcessBuilder, InProcessRunner, ProgressCallback, DoneFuture


def tune_stage(onnx_path: Path, tvm_target: Any, database_dir: Path, trials: int,
               report: Report, cc: str | None = None, session: Any | None = None,
               stats: TuningStats | None = None,
               selected: list[tuple[Any, float]] | None = None) -> TuningStats:
    """Tune one stage's kernels; records go to the JSON database in ``database_dir``.

    ``session``: a TVM RPC session to time candidates on (libraries built with
    ``cc``), or None to time them here. A Ctrl-C raised in ``report`` or while
    measuring ends tuning as KeyboardInterrupt; the records measured so far stay.
    ``selected``: the stage's ``stage_tasks``, if the caller has them already.
    """
    ms = import_ms()
    stats = stats or TuningStats()
    started = time.monotonic()
    if selected is None:
        selected = stage_tasks(onnx_path, tvm_target)
    tasks = [task for task, _ in selected]
    if not tasks:
        return stats
    builder_cls, runner_cls, callback_cls, _ = _ms_classes(ms)
    database = open_database(database_dir)
    with tempfile.TemporaryDirectory(prefix="eedge-tune-") as workdir, _quiet_logs():
        contexts, weights = _tune_contexts(ms, tasks)
        # the stock callbacks keep the database and cost model current; ours reports
        callbacks = [*ms.measure_callback.MeasureCallback.create("default"),
                     callback_cls(stats, trials, report, onnx_path.name)]
        try:
            ms.tune.tune_tasks(
                tasks=contexts, task_weights=weights, work_dir=workdir,
                max_trials_global=trials, max_trials_per_task=trials,
                num_trials_per_iter=trials_per_round(trials, len(contexts)),
                builder=builder_cls(workdir, cc, in_memory=session is None),
                runner=runner_cls(session, number=3 if session is None else 5, repeat=1),
                database=database, cost_model=COST_MODEL, measure_callbacks=callbacks,
                task_scheduler=TASK_SCHEDULER)
        except _Interrupted:
            raise KeyboardInterrupt from None
        except KeyboardInterrupt:
            raise
        except Exception as exc:
            if stats.interrupted or isinstance(exc.__cause__, _Interrupted):
                raise KeyboardInterrupt from None
            if session is not None:  # the device went away: a TargetError, not the compiler's
                from eedge.backends.tvm_rpc_tuning import check_session

                check_session(session, str(exc))
            first = (str(exc).splitlines() or [type(exc).__name__])[0]
            raise ToolchainError(f"tuning {onnx_path.name} failed: {first[:200]}") from exc
        finally:
            stats.seconds += time.monotonic() - started
    return stats


@contextmanager
def _quiet_logs() -> Iterator[None]:
    """MetaSchedule logs every task at INFO to the root logger; the CLI shows progress."""
    import logging

    names = ["tvm.s_tir.meta_schedule", "tvm.meta_schedule"]
    saved = [(logging.getLogger(n), logging.getLogger(n).level) for n in names]
    for logger, _ in saved:
        logger.setLevel(logging.WARNING)
    try:
        yield
    finally:
        for logger, level in saved:
            logger.setLevel(level)


def count_records(database_dir: Path) -> int:
    path = database_dir / RECORD_FILE
    if not path.is_file():
        return 0
    return sum(1 for line in path.read_text().splitlines() if _valid_json(line))


def _valid_json(line: str) -> bool:
    if not line.strip():
        return False
    try:
        json.loads(line)
    except ValueError:
        return False
    return True


def clean_records(database_dir: Path) -> None:
    """Drop a half-written last line (an interrupt mid-write) so the file always parses."""
    for name in (WORKLOAD_FILE, RECORD_FILE):
        path = database_dir / name
        if path.is_file():
            lines = [line for line in path.read_text().splitlines() if _valid_json(line)]
            path.write_text("".join(line + "\n" for line in lines))


def open_database(database_dir: Path) -> Any:
    """The JSON database in ``database_dir`` (TVM's two files; missing ones read as empty)."""
    ms = import_ms()
    return ms.database.JSONDatabase(str(database_dir / WORKLOAD_FILE),
                                    str(database_dir / RECORD_FILE), allow_missing=True)


def apply_database(onnx_path: Path, tvm_target: Any, database_dir: Path) -> Any:
    """The stage's fused batch-1 module, each kernel with a record scheduled from it.

    The database is applied to the very module the tasks were extracted from.
    TVM's ``compile_relax`` is not used: it legalizes and fuses again, and its
    AnnotateTIROpPattern adds an ``op_pattern`` attribute to the already fused
    kernels, which changes their structural hash, so the tuned kernels (the
    convolutions) found no record and were compiled unscheduled (residual
    96x96: tuned 3x slower than untuned).
    """
    import tvm
    from tvm.relax.transform import MetaScheduleApplyDatabase

    mod = prepare_module(onnx_path, tvm_target, TUNED_BATCH)
    with _quiet_logs(), tvm_target, open_database(database_dir), \
            tvm.transform.PassContext(opt_level=3):
        return MetaScheduleApplyDatabase()(mod)


def compile_tuned(onnx_path: Path, tvm_target: Any, database_dir: Path) -> Any:
    """Compile a stage at batch 1, taking every kernel the database has a record for."""
    import tvm
    from tvm import relax

    mod = apply_database(onnx_path, tvm_target, database_dir)
    # already legalized and fused: only the CPU pipeline's lowering passes remain
    # (its package does not export dataflow_lower_passes, hence .pipeline)
    cpu = relax.backend.cpu_generic.pipeline
    lower = tvm.transform.Sequential([*cpu.dataflow_lower_passes(tvm_target),
                                      *cpu.finalize_passes(tvm_target)])
    with tvm_target, tvm.transform.PassContext(opt_level=3):
        return relax.build(mod, target=tvm_target, relax_pipeline=lower)


def database_names(target_name: str) -> tuple[str, str]:
    """The bundle's file names of a target's tuning database (workloads, records)."""
    return (f"tvm-{target_name}.tuning-workloads.json",
            f"tvm-{target_name}.tuning-records.json")


def tuning_target(target: Any) -> Any:
    """TVM target of tuning and of tuned compiles: one core, as the stages are timed.

    A target that names no CPU and no triple builds for this machine (``host``):
    it gets this machine's CPU, as LLVM names it. Plain ``llvm`` means a generic
    x86-64 (SSE2): the tuned kernels could not use AVX2/AVX-512, which ONNX
    Runtime picks at run time. Measured on the residual 96x96 model (48 trials
    per stage): tuned 1.24x ONNX Runtime's time generic, 0.51-0.79x with the CPU
    named. Tuned host libraries therefore run on CPUs like the one that compiled
    them (as tuning records are only valid for the CPU they were timed on).
    """
    import tvm

    settings = {**target.target, "num-cores": 1}
    if "mcpu" not in settings and "mtriple" not in settings:
        cpu = host_cpu()
        if cpu:
            settings["mcpu"] = cpu
    return tvm.target.Target(settings)


def host_cpu() -> str | None:
    """This machine's CPU as LLVM names it (``skylake-avx512``...), None if LLVM cannot tell."""
    from tvm.target import codegen

    cpu = str(codegen.llvm_get_system_cpu() or "")
    valid = cpu and cpu != "generic" and codegen.llvm_is_valid_cpu(
        cpu, codegen.llvm_get_system_triple())
    return cpu if valid else None


def _copy_database(bundle: Any, target_name: str, into: Path) -> None:
    for name, file_name in zip(database_names(target_name), (WORKLOAD_FILE, RECORD_FILE)):
        if name in bundle.manifest["files"]:
            (into / file_name).write_bytes(bundle.file(name).read_bytes())


def _store_database(bundle: Any, target: Any, dbdir: Path, trials: int) -> Any:
    """Copy the database into the bundle (temp name, rename) and record it with checksums."""
    import tvm

    from eedge.ir.bundle import Bundle, file_entries, write_manifest

    clean_records(dbdir)
    names = database_names(target.name)
    for name, file_name in zip(names, (WORKLOAD_FILE, RECORD_FILE)):
        source = dbdir / file_name
        tmp = bundle.path / f".{name}.partial"
        tmp.write_bytes(source.read_bytes() if source.is_file() else b"")
        tmp.replace(bundle.path / name)
    manifest = dict(bundle.manifest)
    tvm_entries = dict(manifest.get("tvm") or {})
    entry = dict(tvm_entries.get(target.name) or {})
    previous = int((entry.get("tuning") or {}).get("trials", 0))
    entry.update({"version": entry.get("version", tvm.__version__),
                  "target": entry.get("target", json.dumps(target.target, sort_keys=True)),
                  "tuning": {"workloads": names[0], "records": names[1],
                             "trials": previous + trials, "batch": TUNED_BATCH,
                             # the CPU the kernels were timed and are compiled for
                             "cpu": str(tuning_target(target).attrs.get("mcpu", "")),
                             "record_count": count_records(dbdir)}})
    tvm_entries[target.name] = entry
    manifest["tvm"] = tvm_entries
    manifest["files"] = {**manifest["files"], **file_entries(bundle.path, list(names))}
    write_manifest(bundle.path, manifest)
    return Bundle(path=bundle.path, manifest=manifest)


def add_database(bundle: Any, target_name: str, database_dir: Path, trials: int) -> Any:
    """Store a tuning database measured earlier (``database_dir`` holds TVM's two files)
    in the bundle, as if its ``trials`` had been tuned here; compiles then apply it.

    For re-using one database across bundles of the same stages (``make bench``
    with a saved database): records are keyed by the kernels' structure, not weights.
    """
    from eedge.backends.tvm_compiler import resolve_target

    target = resolve_target(target_name)
    if not all((database_dir / name).is_file() for name in (WORKLOAD_FILE, RECORD_FILE)):
        raise BundleError(f"{database_dir} holds no tuning database ({WORKLOAD_FILE}, "
                          f"{RECORD_FILE}): point to a directory written by save_database")
    ms = import_ms()
    source = open_database(database_dir)
    with tempfile.TemporaryDirectory(prefix="eedge-tunedb-") as tmp:
        dbdir = Path(tmp)
        _copy_database(bundle, target.name, dbdir)
        merged = open_database(dbdir)
        # records point at workloads by their line in the workload file: commit each
        # through the database so the numbering stays consistent
        for record in source.get_all_tuning_records():
            merged.commit_tuning_record(ms.database.TuningRecord(
                record.trace, merged.commit_workload(record.workload.mod), record.run_secs,
                record.target, record.args_info))
        return _store_database(bundle, target, dbdir, trials)


def save_database(bundle: Any, target_name: str, into: Path) -> None:
    """Write the bundle's tuning database for ``target_name`` as TVM's two files."""
    into.mkdir(parents=True, exist_ok=True)
    _copy_database(bundle, target_name, into)


def tune_bundle(bundle: Any, target: Any, trials: int, say: Callable[[str], None],
                report: Report, session: Any | None = None) -> Any:
    """Tune every stage (``trials`` per stage on average, see stage_budgets) and store the
    database in the bundle.

    A database already in the bundle is extended, not replaced. On Ctrl-C the
    records measured so far are stored before the interrupt propagates, so a
    later compile (tuned or not) uses them.

    ``session``: a TVM RPC session (``tvm_rpc_tuning``) to time candidates on, built
    with the target's ``cc``; a cross-compiled target needs one. A lost session
    (TargetError) also stores the records measured before it.
    """
    if target.cc is not None and session is None:
        raise ToolchainError(f"tuning for {target.name} times candidates on the device, "
                             "which needs a TVM RPC session: give --rpc DEVICE.yaml (with "
                             "tvm_rpc), or tune --target host here")
    tvm_target = tuning_target(target)
    stats = TuningStats()
    with tempfile.TemporaryDirectory(prefix="eedge-tunedb-") as tmp:
        dbdir = Path(tmp)
        _copy_database(bundle, target.name, dbdir)
        total = trials * len(bundle.stages)
        selected = [stage_tasks(bundle.file(s["files"]["onnx"]), tvm_target)
                    for s in bundle.stages]
        budgets = stage_budgets([[flops for _, flops in tasks] for tasks in selected], trials)

        try:
            for stage, budget, tasks in zip(bundle.stages, budgets, selected):
                if budget <= 0:
                    continue
                say(f"tuning {stage['name']} ({budget} trials)")
                # stats is shared: trials done and best latency count over all stages
                tune_stage(bundle.file(stage["files"]["onnx"]), tvm_target, dbdir, budget,
                           lambda done, _stage_total, best: report(done, total, best),
                           cc=target.cc, session=session, stats=stats, selected=tasks)
        except (KeyboardInterrupt, TargetError):
            _store_database(bundle, target, dbdir, stats.trials)
            raise
        return _store_database(bundle, target, dbdir, stats.trials)


def compile_tuned_library(bundle: Any, stage: dict[str, Any], out: Path, target: Any,
                          tuning: dict[str, Any]) -> None:
    """Compile one stage at batch 1 with the bundle's tuning database applied."""
    with tempfile.TemporaryDirectory(prefix="eedge-tunedb-") as tmp:
        dbdir = Path(tmp)
        _copy_database(bundle, target.name, dbdir)
        try:
            executable = compile_tuned(bundle.file(stage["files"]["onnx"]),
                                       tuning_target(target), dbdir)
        except ModelError:
            raise
        except Exception as exc:
            raise ToolchainError(f"compiling {stage['name']} with the tuning database failed: "
                                 f"{str(exc).splitlines()[0][:200]}") from exc
    executable.export_library(str(out), **({"cc": target.cc} if target.cc else {}))

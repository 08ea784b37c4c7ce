"""Compile a bundle's ONNX stages with Apache TVM (Relax) into shared libraries.

TVM is an optional extra (`pip install 'eedge[tvm]'`): it is imported only
here and in the TVM stage runner. Each stage is compiled from the very ONNX
file the bundle verified, so the TVM libraries inherit its inputs, outputs
and symbolic batch; the stage's ``io`` for a TVM format is the ONNX one.
Libraries are stored next to the stages (``stageK.tvm-<target>.so``) with
checksums, and the manifest records the TVM version and target string.
"""

from __future__ import annotations

import json
import shutil
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from eedge.errors import BundleError, ModelError, ToolchainError
from eedge.ir.bundle import Bundle, file_entries, write_manifest
from eedge.progress import Say, Tick, quiet_say, quiet_tick


@dataclass(frozen=True)
class TvmTarget:
    """Where a library runs: TVM's target string and the C compiler that links it."""

    name: str
    target: dict[str, str]  # TVM's target in its JSON form (0.27 rejects "llvm -mcpu=..")
    cc: str | None  # None: TVM's default host compiler


TVM_TARGETS = {
    "host": TvmTarget("host", {"kind": "llvm"}, None),
    # the Pi 4's Cortex-A72, cross-linked with Debian's aarch64 toolchain
    "rpi4": TvmTarget("rpi4", {"kind": "llvm", "mtriple": "aarch64-linux-gnu",
                               "mcpu": "cortex-a72"}, "aarch64-linux-gnu-gcc"),
}


def import_tvm() -> Any:
    try:
        import tvm
    except ImportError as exc:
        raise ToolchainError("Apache TVM is not installed: pip install 'eedge[tvm]' "
                             "(apache-tvm 0.27)") from exc
    return tvm


def tvm_format(target: str) -> str:
    """The stage-file format key of a TVM target, as the manifest lists it."""
    return f"tvm_{target}"


def resolve_target(name: str) -> TvmTarget:
    if name not in TVM_TARGETS:
        raise ToolchainError(f"no TVM target {name!r}; choose one of {', '.join(TVM_TARGETS)}")
    target = TVM_TARGETS[name]
    if target.cc is not None and shutil.which(target.cc) is None:
        raise ToolchainError(f"{target.cc} is not installed; it links TVM libraries for "
                             f"{name}: apt-get install gcc-aarch64-linux-gnu")
    return target


def import_onnx_module(onnx_path: Path) -> Any:
    """ONNX file -> a Relax IRModule; an operator TVM cannot import is a ModelError.

    TVM's importer warns about its own internals (it renames tensors such as
    `input.1` that its IR cannot spell, probes shapes, runs the ONNX checker):
    nothing a user can act on for a file eedge already verified, so they are hidden.
    """
    import onnx

    import_tvm()
    from tvm.relax.frontend.onnx import from_onnx

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            return from_onnx(onnx.load(str(onnx_path)), keep_params_in_input=False)
        except Exception as exc:  # TVM raises many kinds for unsupported operators
            raise ModelError(f"TVM cannot import {onnx_path.name}: "
                             f"{str(exc).splitlines()[0]}") from exc


def compile_onnx(onnx_path: Path, out: Path, target: TvmTarget) -> None:
    """ONNX file -> Relax -> a shared library at ``out``."""
    tvm = import_tvm()
    module = import_onnx_module(onnx_path)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        executable = tvm.compile(module, target=tvm.target.Target(target.target))
    options = {"cc": target.cc} if target.cc else {}
    executable.export_library(str(out), **options)


def compile_bundle(bundle: Bundle, target_name: str, say: Say | None = None,
                   tick: Tick | None = None, trials: int = 0,
                   report: Any | None = None) -> Bundle:
    """Compile every ONNX stage for ``target_name`` and record the libraries in the manifest.

    Libraries are written under temporary names and renamed only when all
    stages compiled, then the manifest is replaced atomically; a failure
    leaves the bundle as it was. A stage takes TVM about a second or more, so
    ``say``/``tick`` report each one.

    ``trials`` > 0 first tunes each stage with MetaSchedule (``report`` gets
    trials done and the best latency so far); a tuning database already in the
    bundle for this target is extended, and is applied whenever it exists, so
    tuning is paid once. Tuned libraries are compiled at batch 1.
    """
    from eedge.backends import tvm_tuning

    say, tick = say or quiet_say, tick or quiet_tick
    target = resolve_target(target_name)
    tvm = import_tvm()
    stages = bundle.stages
    if any("onnx" not in s["files"] for s in stages):
        raise BundleError(f"{bundle.path} has no ONNX stage files to compile; export it from "
                          "an ONNX or torch model")
    fmt = tvm_format(target.name)
    if trials > 0:
        bundle = tvm_tuning.tune_bundle(bundle, target, trials, say, report or
                                        (lambda _d, _t, _b: None))
    entry = dict((bundle.manifest.get("tvm") or {}).get(target.name) or {})
    tuning = dict(entry.get("tuning") or {})
    names = [f"stage{s['index']}.tvm-{target.name}.so" for s in stages]
    temporary = [bundle.path / f".{name}.partial" for name in names]
    try:
        for k, (stage, tmp) in enumerate(zip(stages, temporary)):
            say(f"compiling {stage['name']} with TVM for {target.name}"
                + (" (tuned)" if tuning else ""))
            tick(k, len(stages))
            if tuning:
                tvm_tuning.compile_tuned_library(bundle, stage, tmp, target, tuning)
            else:
                compile_onnx(bundle.file(stage["files"]["onnx"]), tmp, target)
            tick(k + 1, len(stages))
        for tmp, name in zip(temporary, names):
            tmp.replace(bundle.path / name)
    finally:
        for tmp in temporary:
            tmp.unlink(missing_ok=True)
    manifest = dict(bundle.manifest)
    manifest["stages"] = [dict(s, files={**s["files"], fmt: name},
                               io={**s["io"], fmt: s["io"]["onnx"]})
                          for s, name in zip(stages, names)]
    manifest["files"] = {**manifest["files"], **file_entries(bundle.path, names)}
    entry.update({"version": tvm.__version__, "target": json.dumps(target.target, sort_keys=True)})
    entry.pop("cpu", None)
    if tuning:
        entry["tuning"] = tuning
        # tuned libraries are compiled for this machine's CPU (tvm_tuning.tuning_target);
        # the runtime refuses them on another CPU instead of dying on an illegal instruction
        cpu = str(tvm_tuning.tuning_target(target).attrs.get("mcpu", ""))
        if cpu and target.cc is None:
            entry["cpu"] = cpu
    manifest["tvm"] = {**(manifest.get("tvm") or {}), target.name: entry}
    write_manifest(bundle.path, manifest)
    return Bundle(path=bundle.path, manifest=manifest)

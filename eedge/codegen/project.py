"""``eedge codegen``: write a standalone C99 project for an int8 model.

The project holds the hand-written runtime (``firmware_templates/runtime``),
one port (host, qemu-mps2 or cortex-m-generic), and generated files: the
model's weights as const arrays, one function per stage calling kernels
with precomputed integer parameters, the arena offsets from the memory
planner and the exit thresholds in fixed point. It builds with ``make``
alone and is written atomically.
"""

from __future__ import annotations

import json
import re
import shutil
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jinja2
import numpy as np

from eedge import __version__
from eedge.codegen.byte_chains import LUT_OP, emit_lut, fuse_byte_chains
from eedge.codegen.banded import (Fusion, band_bytes, choose_fusions, describe, emit_fused,
                                  schedule, step_tensors)
from eedge.codegen.c_text import c_comment_text, c_string_body
from eedge.codegen.emit import EmitContext, emit_node, softmax_exp_table, softmax_fields
from eedge.codegen.model_source import INT8_ONLY, CodegenModel
from eedge.codegen.planner import MemoryPlan, plan_memory
from eedge.errors import ModelError, TargetError
from eedge.ir.bundle import staging_directory
from eedge.ops import registry
from eedge.policies.fixed_point import ALWAYS, ENTROPY_LUT, NEVER, threshold_q
from eedge.policies.running_mean import RUNNING_MEAN, sum_threshold_q
from eedge.reference.int8_kernels import quant_of, scale_of
from eedge.resources import data_dir, require_dir
from eedge.targets import QEMU_UART_BASES, Target, load_target, target_from_data

CRITERION_IDS = {"max_softmax": 0, "margin": 1, "entropy": 2, "gate": 3}

TEMPLATES = data_dir("firmware_templates")
PORTS = {"host": "host", "mcu-qemu": "qemu-mps2", "mcu-serial": "cortex-m-generic"}
FPU_FLAGS = {"none": "-mfloat-abi=soft", "fpv4-sp-d16": "-mfloat-abi=hard -mfpu=fpv4-sp-d16",
             "fpv5-d16": "-mfloat-abi=hard -mfpu=fpv5-d16",
             "fpv5-sp-d16": "-mfloat-abi=hard -mfpu=fpv5-sp-d16"}
DSP_CPUS = ("cortex-m4", "cortex-m7", "cortex-m33", "cortex-m55")
STACK_BYTES = 8 * 1024
MAX_STAGES = 16  # EEDGE_MAX_STAGES in runtime/include/eedge/runtime.h
# Host sanitizer build (`make sanitize`, `eedge build --sanitize`): -O1 keeps it quick and
# the reports readable; no recovery, so the first finding ends the run with a non-zero exit.
SANITIZE_FLAGS = ("-g -O1 -fno-omit-frame-pointer -fsanitize=address,undefined "
                  "-fno-sanitize-recover=all")
SANITIZED_BINARY = "build/model-sanitized"
# Microcontroller ports: UBSan alone, trapping (ASan needs an OS); the DSP kernels are covered.
MCU_SANITIZE_FLAGS = "-fsanitize=undefined -fsanitize-undefined-trap-on-error"
SANITIZED_ELF = "build/firmware-sanitized.elf"
# (flash, RAM) origins: QEMU's MPS2 maps code at 0; STM32 parts put flash at 0x08000000
MEMORY_ORIGINS = {"qemu-mps2": ("0x00000000", "0x20000000"),
                  "cortex-m-generic": ("0x08000000", "0x20000000")}


PROJECT_FILE = "eedge-project.json"


@dataclass
class GeneratedProject:
    """What was generated, saved as eedge-project.json so build/run/flash need only the dir.

    The target's description is kept whole (``target_spec``), not as a path to
    its YAML: a project holds no absolute path, so it can be moved, and the
    same inputs give the same bytes wherever it is generated.
    """

    path: Path
    target: str
    target_spec: dict[str, Any]
    port: str
    arena_bytes: int
    weight_bytes: int
    quant_param_bytes: int
    input_bytes: int
    stage_outputs: list[list[tuple[str, int]]]
    dsp: bool
    optimize: str
    input_scale: float
    input_zero_point: int
    input_layout: str | None
    exit_stages: list[int]
    test_inputs: int = 0
    scratch_bytes: int = 0   # the kernels' static scratch buffer (RAM beside the arena)
    files: list[str] = field(default_factory=list)
    plan: MemoryPlan | None = None
    op_labels: list[dict[str, Any]] = field(default_factory=list)  # per-op profile build

    def to_json(self) -> dict[str, Any]:
        # op_labels only in per-op profile builds: a normal project's JSON is unchanged
        data = {k: v for k, v in self.__dict__.items() if k not in ("plan", "path")
                and not (k == "op_labels" and not v)}
        return data

    @classmethod
    def load(cls, path: Path) -> "GeneratedProject":
        meta = path / PROJECT_FILE
        if not meta.is_file():
            raise TargetError(f"{path} is not a project made by `eedge codegen` (no "
                              f"{PROJECT_FILE})")
        try:
            data = json.loads(meta.read_text())
            data["stage_outputs"] = [[(n, int(b)) for n, b in stage]
                                     for stage in data["stage_outputs"]]
            if "target_file" in data:  # written before target_spec: an absolute path
                data["target_spec"] = _legacy_target_spec(data.pop("target_file"),
                                                          data["target"])
            return cls(path=path, **data)
        except (ValueError, TypeError, KeyError) as exc:
            raise TargetError(f"{meta} is damaged ({exc}); run `eedge codegen` again") from exc

    def load_target(self) -> Target:
        """The target this project was generated for, from the project itself."""
        return target_from_data(self.target_spec, self.path / PROJECT_FILE)


def _legacy_target_spec(target_file: str, name: str) -> dict[str, Any]:
    """The target of a project that recorded a YAML path: the file, else the shipped one."""
    return load_target(target_file if Path(target_file).is_file() else name).data


def _environment() -> jinja2.Environment:
    return jinja2.Environment(loader=jinja2.FileSystemLoader(str(require_dir(TEMPLATES))),
                              undefined=jinja2.StrictUndefined, keep_trailing_newline=True,
                              autoescape=False)


IN_PLACE_OPS = frozenset({"ADD", "MUL", "RELU", "RELU6", "RELU_N1_TO_1", LUT_OP})
ALIAS_OPS = frozenset({"RESHAPE", "SQUEEZE", "EXPAND_DIMS"})
"""Ops whose output is their input's bytes under another shape: an arena alias, no copy."""


def plan_for(model: CodegenModel) -> MemoryPlan:
    """Arena offsets for every activation of the model (all stages).

    RESHAPE outputs alias their input. Elementwise kernels (ADD, MUL,
    requantizing ReLUs) read element i before writing element i, so their
    output may take over an input's buffer when that input is read nowhere
    after this node: the in-place case that matters for residual blocks.
    Residual joins may also run banded (``eedge.codegen.banded``): of the
    sets of joins that can, the plan with the smallest arena is taken, and
    its ``fusions`` say which joins generate_project must emit banded.
    """
    return choose_fusions(model, lambda fusions: plan_schedule(model, fusions))


def plan_schedule(model: CodegenModel, fusions: Sequence[Any] = ()) -> MemoryPlan:
    """The plan of the steps ``banded.schedule`` orders for ``fusions`` (banded joins).

    A banded join runs at its ADD's place and writes the sum over its skip tensor:
    one whose skip tensor (or anything sharing its buffer) is read later, kept, or
    the model's input cannot, and is dropped (``plan.fusions`` holds the others).
    """
    g = model.graph
    fusions = list(fusions)
    sizes = {name: info.elements_per_sample() * max(int(info.shape[0]) if info.shape and
                                                    isinstance(info.shape[0], int) else 1, 1)
             for name, info in g.tensors.items()}
    while True:
        per_stage = schedule(model, fusions)
        items = [item for stage in per_stage for item in stage]
        steps = [step_tensors(g, item) for item in items]
        keep: dict[str, int] = {}
        end = -1
        for stage, stage_items in zip(model.stages, per_stage):
            end += len(stage_items)
            for t in stage.outputs:
                keep[t] = max(keep.get(t, end), end)
        for t in model.handoffs:  # a split head sends these after its last stage
            keep[t] = end
        plain = [g.nodes[i] for i in items if not isinstance(i, Fusion)]
        aliases = {n.outputs[0]: n.inputs[0] for n in plain
                   if n.op_type in ALIAS_OPS and n.inputs[0] in g.tensors}
        last_read: dict[str, int] = {}
        for step, (reads, _) in enumerate(steps):
            for t in reads:
                last_read[t] = step
        aliased = set(aliases) | set(aliases.values())
        dropped = []
        for step, item in enumerate(items):
            if isinstance(item, Fusion):
                out = g.nodes[item.add].outputs[0]
                group = _alias_group(aliases, item.skip)
                if any(last_read.get(t, -1) > step or t in keep or t == model.input
                       for t in group) or out in aliases:
                    dropped.append(item)
                    continue
                aliases[out] = item.skip
                aliased |= {out, item.skip}
                continue
            node = g.nodes[item]
            out = node.outputs[0]
            registered = registry.builtin(node.op_type)
            in_place = node.op_type in IN_PLACE_OPS or (registered is not None
                                                         and registered.in_place)
            if not in_place or out in aliased:
                continue
            for t in g.activation_inputs(node):
                same_size = (g.tensors[t].elements_per_sample()
                             == g.tensors[out].elements_per_sample())
                if (same_size and last_read.get(t) == step and t not in keep
                        and t not in aliased and t != model.input):
                    aliases[out] = t
                    aliased |= {out, t}
                    break
        if not dropped:
            break
        fusions = [f for f in fusions if f not in dropped]
    bands = {f.band: band_bytes(g, f) for f in fusions}
    plan = plan_memory({**sizes, **bands}, steps, [model.input], keep, aliases)
    plan.fusions = fusions
    return plan


def _emit_fused(g: Any, fusion: Any, tensor_ref: Any, constant_ref: Any, stage: int,
                first_label: int | None) -> tuple[Any, list[dict[str, Any]]]:
    """A banded conv + ADD; in a per-op build, timed as the conv's and the ADD's call sites."""
    if first_label is None:
        return emit_fused(g, fusion, tensor_ref, constant_ref), []
    from eedge.profiling.per_op import count_run, time_call

    emitted = emit_fused(g, fusion, tensor_ref, constant_ref, time_call, count_run,
                         (first_label, first_label + 1))
    return emitted, [_op_label(g, stage, i, g.nodes[i].name) for i in (fusion.conv, fusion.add)]


def _op_label(g: Any, stage: int, i: int, name: str) -> dict[str, Any]:
    """A per-op build's label of node ``i``'s kernel call (``per_op.OpLabel`` fields)."""
    from eedge.passes.cost import node_macs

    return {"stage": stage, "node": i, "op": g.nodes[i].op_type, "name": name,
            "macs": int(node_macs(g, g.nodes[i]))}


def _alias_group(aliases: dict[str, str], tensor: str) -> set[str]:
    """``tensor`` and every tensor sharing its buffer through ``aliases``."""
    def root(t: str) -> str:
        while t in aliases:
            t = aliases[t]
        return t

    base = root(tensor)
    return {tensor, base} | {t for t in aliases if root(t) == base}


def _ensemble_context(model: CodegenModel) -> dict[str, Any] | None:
    if not model.ensemble:
        return None
    from eedge.policies.monitor import rho_q

    members = model.ensemble["members"]
    classes = {int(model.graph.tensors[model.exit_tensor(k)].shape[-1]) for k in members}
    if len(classes) != 1:
        raise TargetError("ensemble members must have the same number of classes")
    monitor = model.ensemble.get("monitor") or {}
    running = model.ensemble.get("mode") == RUNNING_MEAN
    if running and (monitor or model.handoffs):
        raise TargetError("a running-mean ensemble cannot have a QUTE monitor or be split; "
                          "turn the mode off (`eedge calibrate ... --ensemble none`)")
    return {"members": members, "last": members[-1], "classes": classes.pop(),
            "running": running,
            "counts": [members.index(k) + 1 if k in members else 0
                       for k in range(len(model.thresholds))],
            "flags": [int(k in members) for k in range(len(model.thresholds))],
            "window": monitor.get("window", 0),
            "rho_q": rho_q(monitor["rho"], monitor["window"], len(members)) if monitor else 0}


def _running_count(model: CodegenModel, k: int) -> int:
    """How many running-mean members exit k's decision averages (0: it decides alone)."""
    ensemble = model.ensemble or {}
    if ensemble.get("mode") != RUNNING_MEAN or k not in ensemble["members"]:
        return 0
    return list(ensemble["members"]).index(k) + 1


def _gate(model: CodegenModel, k: int, final: bool, fields: dict[str, int], criterion: str,
          classes: int) -> tuple[str, int, tuple[float, int] | None]:
    """A learned gate (exit k's column after its classes): softmax and argmax read the
    classes only (``fields["cols"]``), and the gate criterion compares the int8 gate
    logit with an integer threshold in its (scale, zero point). Returns the criterion,
    the class count and that (scale, zero point) or None."""
    gate = model.gates[k]
    if gate is None:
        if criterion == "gate" and not final:
            raise ModelError(f"exit{k} uses the gate criterion but has no gate; export the "
                             "model with --gates")
        return ("max_softmax" if criterion == "gate" else criterion), classes, None
    fields["cols"] = gate
    quant = quant_of(model.graph, model.exit_tensor(k))
    return criterion, gate, (scale_of(quant), int(quant.zero_point[0]))


def _budget_context(model: CodegenModel) -> dict[str, Any] | None:
    if model.budget is None:
        return None
    from eedge.policies.budget import IntegerBudgetController

    controller = IntegerBudgetController(model.budget["macs"], model.exit_costs,
                                         model.budget.get("gain", 0.05))
    return {"macs": controller.budget, "gain_q": controller.gain_q, "limit": controller.limit}


def _c_constants(model: CodegenModel, used: dict[str, str]) -> list[dict[str, Any]]:
    out = []
    emitted = set()
    for original, ident in used.items():
        if ident in emitted:  # another constant with the same values
            continue
        emitted.add(ident)
        value = np.asarray(model.graph.constants[original])
        ctype = {"int8": "int8_t", "int32": "int32_t"}.get(value.dtype.name)
        if ctype is None:
            raise TargetError(f"constant {original!r} has type {value.dtype}; the C runtime "
                              "takes int8 weights and int32 biases")
        flat = value.reshape(-1)
        lines = [", ".join(str(int(v)) for v in flat[i:i + 24]) for i in range(0, flat.size, 24)]
        out.append({"name": ident, "ctype": ctype, "count": max(flat.size, 1),
                    "original": original.replace("*/", "* /"), "shape": list(value.shape),
                    "body": "    " + ",\n    ".join(lines) if lines else "    0"})
    return out


def generate_project(model: CodegenModel, target: Target, out: Path,
                     test_inputs: np.ndarray | None = None, optimize: str = "O2",
                     dsp: bool | None = None, force: bool = False,
                     serial_frames: bool | None = None,
                     profile_ops: bool = False) -> GeneratedProject:
    """Write the project for ``target`` into ``out`` (atomically).

    ``profile_ops`` times every kernel call (``eedge.profiling.per_op``); off, the
    generated files are exactly those of a production build.
    """
    port = PORTS.get(target.kind)
    if port is None:
        raise TargetError(f"target {target.name} ({target.kind}) does not run the C runtime; "
                          "pick host or a microcontroller target")
    if optimize not in ("O0", "O1", "O2", "O3", "Os"):
        raise TargetError(f"unknown optimization level {optimize!r}; use O2 or Os")
    use_dsp = bool(target.get("dsp", False)) and target.get("cpu") in DSP_CPUS if dsp is None \
        else dsp
    if use_dsp and port == "host":
        raise TargetError("the DSP path needs an Arm Cortex-M target")
    if len(model.stages) > MAX_STAGES:
        raise TargetError(f"{model.name} has {len(model.stages)} stages; the C runtime runs at "
                          f"most {MAX_STAGES} (one tick counter each): use fewer exits")
    model = fuse_byte_chains(model)
    g = model.graph
    left = [t for n in g.nodes for t in n.outputs if g.tensors[t].dtype != "int8"]
    if left:
        raise ModelError(f"{model.source}: tensor {left[0][:80]!r} is "
                         f"{g.tensors[left[0]].dtype}: {INT8_ONLY}; a float part between "
                         "DEQUANTIZE and QUANTIZE runs only when each op in it works "
                         "element by element")
    plan = plan_for(model)
    used: dict[str, str] = {}

    by_content: dict[tuple[str, tuple[int, ...], bytes], str] = {}

    def constant_ref(name: str) -> str:
        # constants with equal values share one array (an unrolled GRU/LSTM's FCs repeat
        # their weights at every time step; TFLite files share them as one buffer)
        if name not in used:
            value = np.ascontiguousarray(g.constants[name])
            key = (value.dtype.str, value.shape, value.tobytes())
            used[name] = by_content.setdefault(key, f"eedge_const_{len(by_content)}")
        return used[name]

    def tensor_ref(name: str) -> str:
        return f"T({plan.offsets[name]})"

    declarations: list[str] = []
    scratch_words = 0
    stages_ctx = []
    op_labels: list[dict[str, Any]] = []
    stage_items = dict(zip((s.index for s in model.stages), schedule(model, plan.fusions)))
    for stage in model.stages:
        statements = []
        for i in stage_items[stage.index]:
            if isinstance(i, Fusion):
                emitted, labels = _emit_fused(g, i, tensor_ref, constant_ref, stage.index,
                                              len(op_labels) if profile_ops else None)
                declarations.extend(emitted.declarations)
                scratch_words = max(scratch_words, emitted.scratch_words)
                op_labels.extend(labels)
                conv, add = g.nodes[i.conv], g.nodes[i.add]
                statements.append(f"/* CONV_2D {c_comment_text(conv.name)} + ADD "
                                  f"{c_comment_text(add.name)}, {describe(g, i)} */ "
                                  f"{emitted.statement}")
                continue
            node = g.nodes[i]
            context = EmitContext(g, tensor_ref, constant_ref, f"n{i}")
            emitted = emit_lut(context, node) if node.op_type == LUT_OP else emit_node(context, node)
            declarations.extend(emitted.declarations)
            scratch_words = max(scratch_words, emitted.scratch_words)
            what = "+".join(node.attrs["fused"]) if node.op_type == LUT_OP else node.name
            call = emitted.statement
            if profile_ops:
                from eedge.profiling.per_op import wrap_statement

                call = wrap_statement(call, len(op_labels))
                op_labels.append(_op_label(g, stage.index, i, what))
            statements.append(f"/* {node.op_type} {c_comment_text(what)} */ {call}")
        outputs = [{"offset": plan.offsets[t], "bytes": g.tensors[t].elements_per_sample()}
                   for t in stage.outputs]
        stages_ctx.append({"index": stage.index, "statements": statements, "outputs": outputs,
                           "exit": -1 if stage.exit_index is None else stage.exit_index})
    n_exits = len(g.exits)
    exits_ctx = []
    for k in range(n_exits):
        fields = softmax_fields(g, model.exit_tensor(k))
        fields["rows"] = 1
        exps = softmax_exp_table(scale_of(quant_of(g, model.exit_tensor(k))))
        criterion = model.criteria[k]
        classes = int(g.tensors[model.exit_tensor(k)].shape[-1])
        final = k == n_exits - 1 and not model.handoffs  # a head's last exit may pass
        criterion, classes, gate_q = _gate(model, k, final, fields, criterion, classes)
        low = model.window_low[k]  # on the final exit: the selective threshold
        members = _running_count(model, k)
        if members:  # a running-mean member: its thresholds are on the ensemble's sum
            limit = sum_threshold_q(model.thresholds[k], final, criterion, classes, members)
            reject = ALWAYS if low is None else sum_threshold_q(low, False, criterion, classes,
                                                                 members)
        else:
            limit = threshold_q(model.thresholds[k], final, criterion, classes, gate_q)
            reject = ALWAYS if low is None else threshold_q(low, False, criterion, classes,
                                                            gate_q)
        exits_ctx.append({
            "index": k, "criterion": CRITERION_IDS[criterion], "cost": model.exit_costs[k],
            "threshold_q": limit, "reject_q": reject,
            "softmax": "{" + ", ".join(f".{a} = {b}" for a, b in fields.items()) + "}",
            "exp_table": ", ".join(str(int(v)) for v in exps), "exp_count": len(exps)})
    constants = _c_constants(model, used)
    input_info = g.tensors[model.input]
    quant = model.input_quant
    context = {"version": __version__, "source": c_comment_text(model.source),
               "name": c_string_body(model.name),
               "stages": stages_ctx, "exits": exits_ctx, "declarations": declarations,
               "arena_bytes": max(plan.arena_bytes, 16), "input_offset": plan.offsets[model.input],
               "scratch_words": scratch_words,
               "quant_param_bytes": sum(4 * int(n) for d in declarations
                                        for n in re.findall(r"int32_t \w+\[(\d+)\]", d))
               + sum(4 * e["exp_count"] for e in exits_ctx),  # the exits' exp tables
               "input_bytes": input_info.elements_per_sample(),
               "input_shape": "x".join(str(d) for d in input_info.shape),
               "input_scale": f"{quant.scale[0]:.9g}", "input_zero_point": quant.zero_point[0],
               "constants": constants,
               "never": NEVER, "budget": _budget_context(model),
               "handoffs": [{"name": t, "offset": plan.offsets[t],
                             "bytes": g.tensors[t].elements_per_sample()}
                            for t in model.handoffs],
               "ensemble": _ensemble_context(model),
               "entropy_lut": ", ".join(str(int(v)) for v in ENTROPY_LUT)
               if "entropy" in model.criteria else "",
               "weight_bytes": int(sum(np.asarray(g.constants[c]).nbytes
                                       for c in {ident: c for c, ident in used.items()}.values()))}
    env = _environment()
    with staging_directory(out, force, marker=PROJECT_FILE) as tmp:
        for template in ("model.h", "model.c", "model_data.h", "model_data.c"):
            text = env.get_template(f"generated/{template}.j2").render(**context)
            if profile_ops and template == "model.c":
                from eedge.profiling.per_op import add_dump

                text = add_dump(text, len(op_labels))
            (tmp / template).write_text(text)
        shutil.copytree(TEMPLATES / "runtime", tmp / "runtime")
        port_dir = tmp / "port"
        shutil.copytree(TEMPLATES / "ports" / port, port_dir)
        count = 0
        if port != "host":
            for name in ("startup_cortex_m.c", "target_main.c", "timer_systick.c",
                         "uart_cmsdk.c"):
                shutil.copy2(TEMPLATES / "harness" / name, port_dir / name)
            origins = MEMORY_ORIGINS[port]
            (port_dir / "link.ld").write_text(env.get_template("harness/link.ld").render(
                target=target.name, flash_origin=target.get("flash_origin", origins[0]),
                vector_origin=target.get("vector_origin"),
                ram_origin=target.get("ram_origin", origins[1]),
                flash_bytes=target.get("flash_bytes"), ram_bytes=target.get("ram_bytes"),
                stack_bytes=STACK_BYTES))
            samples = np.zeros((1, context["input_bytes"]), np.int8) if test_inputs is None \
                else np.asarray(test_inputs, np.int8).reshape(len(test_inputs), -1)
            count = len(samples)
            (tmp / "test_inputs.c").write_text(env.get_template("generated/test_inputs.c.j2")
                                               .render(version=__version__, count=count,
                                                       input_bytes=context["input_bytes"],
                                                       samples=[", ".join(map(str, s.tolist()))
                                                                for s in samples]))
        frames = (port == "cortex-m-generic" or bool(model.handoffs)) \
            if serial_frames is None else serial_frames
        (tmp / "Makefile").write_text(makefile(target, port, optimize, use_dsp, frames))
        (tmp / "README.md").write_text(readme(model, target, port, context, plan))
        files = sorted(str(p.relative_to(tmp)) for p in tmp.rglob("*") if p.is_file())
        project = GeneratedProject(
            path=out, target=target.name, target_spec=target.data, port=port,
            arena_bytes=context["arena_bytes"], scratch_bytes=4 * scratch_words,
            weight_bytes=context["weight_bytes"], quant_param_bytes=context["quant_param_bytes"],
            input_bytes=context["input_bytes"],
            stage_outputs=[[(t, g.tensors[t].elements_per_sample()) for t in s.outputs]
                           for s in model.stages],
            dsp=use_dsp, optimize=optimize, input_scale=float(quant.scale[0]),
            input_zero_point=int(quant.zero_point[0]), input_layout=model.input_layout,
            exit_stages=[next(s.index for s in model.stages if s.exit_index == k)
                         for k in range(n_exits)],
            test_inputs=count, files=files + [PROJECT_FILE], plan=plan,
            op_labels=op_labels)
        (tmp / PROJECT_FILE).write_text(json.dumps(project.to_json(), indent=2) + "\n")
    return project


def makefile(target: Target, port: str, optimize: str, dsp: bool,
             serial_frames: bool = False) -> str:
    common = ("-std=c99 -Wall -Wextra -Werror -Wshadow -Wno-unused-function "
              f"-{optimize} -Iruntime/include -I. -Iport")
    sources = "model.c model_data.c $(wildcard runtime/src/*.c) $(wildcard port/*.c)"
    if port == "host":
        return f"""# Generated by eedge {__version__}: host build of the C runtime (gcc).
# `make sanitize` builds build/model-sanitized with AddressSanitizer and UBSan: any
# out-of-bounds access or undefined behaviour stops it with a report on stderr.
CC ?= gcc
CFLAGS = {common}
SANITIZE_FLAGS = {SANITIZE_FLAGS}
SOURCES = {sources}
HEADERS = $(wildcard *.h runtime/include/eedge/*.h port/*.h)

build/model: $(SOURCES) $(HEADERS)
\tmkdir -p build
\t$(CC) $(CFLAGS) $(SOURCES) -o $@

sanitize: build/model-sanitized

build/model-sanitized: $(SOURCES) $(HEADERS)
\tmkdir -p build
\t$(CC) $(CFLAGS) $(SANITIZE_FLAGS) $(SOURCES) -o $@

clean:
\trm -rf build
.PHONY: clean sanitize
"""
    cpu = target.get("cpu")
    fpu = FPU_FLAGS[target.get("fpu", "none")]
    defines = " -DEEDGE_USE_DSP" if dsp else ""
    if serial_frames:
        defines += " -DEEDGE_SERIAL_FRAMES"
    if target.get("timer") == "systick":
        defines += " -DEEDGE_TIMER_SYSTICK"
    if target.get("uart") == "cmsdk-apb":
        defines += " -DEEDGE_UART_CMSDK"
    if dsp and target.get("mve"):  # Helium kernels (runtime/src/*_mve.c) for the hot ops
        defines += " -DEEDGE_USE_MVE"
    machine = (target.get("qemu") or {}).get("machine")
    if QEMU_UART_BASES.get(machine, 0x40004000) != 0x40004000:
        defines += f" -DEEDGE_UART_CMSDK_BASE=0x{QEMU_UART_BASES[machine]:08x}u"
    ldflags = ("-nostartfiles --specs=nano.specs -Wl,--gc-sections -Wl,-Map=build/firmware.map "
               "-Tport/link.ld")
    sources += " test_inputs.c"
    return f"""# Generated by eedge {__version__}: {target.name} ({cpu}) build of the C runtime.
CC = arm-none-eabi-gcc
SIZE = arm-none-eabi-size
ARCH = -mcpu={cpu} -mthumb {fpu}
CFLAGS = {common} $(ARCH) -ffunction-sections -fdata-sections{defines}
LDFLAGS = {ldflags}
SOURCES = {sources} $(BOARD_SOURCES)

SANITIZE_FLAGS = {MCU_SANITIZE_FLAGS}
SANITIZED_LDFLAGS = $(subst firmware.map,firmware-sanitized.map,$(LDFLAGS))
HEADERS = $(wildcard *.h runtime/include/eedge/*.h port/*.h)

build/firmware.elf: $(SOURCES) $(HEADERS)
\tmkdir -p build
\t$(CC) $(CFLAGS) $(SOURCES) $(LDFLAGS) -o $@
\t$(SIZE) $@

# `make sanitize`: UBSan in trap mode (no runtime library on bare metal): undefined
# behaviour executes a UDF instruction, a fault the harness reports and exits on.
sanitize: {SANITIZED_ELF}

{SANITIZED_ELF}: $(SOURCES) $(HEADERS)
\tmkdir -p build
\t$(CC) $(CFLAGS) $(SANITIZE_FLAGS) $(SOURCES) $(SANITIZED_LDFLAGS) -o $@
\t$(SIZE) $@

clean:
\trm -rf build
.PHONY: clean sanitize
"""


def readme(model: CodegenModel, target: Target, port: str, context: dict[str, Any],
           plan: MemoryPlan) -> str:
    return f"""# {model.name}: eedge C runtime for {target.name}

Generated by eedge {__version__} from `{model.source}`. Build with `make` (port `{port}`).

- {len(model.stages)} stages, {len(model.graph.exits)} exits; arena {plan.arena_bytes} bytes
  (static, no malloc); constants {context['weight_bytes']} bytes in flash.
- Input: int8 `{context['input_shape']}` at scale {context['input_scale']}, zero point
  {context['input_zero_point']}: quantize floats as `clamp(round(x / scale) + zero_point)`
  (round halves away from zero), in NHWC order.
- API (`model.h`): write the input to `eedge_input()`, call `eedge_infer(&result)`:
  `result.exit_index`, `result.class_index`, `result.confidence` (int8 max-softmax,
  probability `(c + 128) / 256`) and `result.stage_ticks[]`.
- Layout: `runtime/` is eedge's hand-written kernel library (bit-exact with TFLite
  Micro's reference kernels), `port/` the platform seam, `model*.c` generated.
- `cortex-m-generic` boards: `port/link.ld` assumes flash at 0x08000000 and RAM at
  0x20000000 (STM32; set `flash_origin`/`ram_origin` in the target YAML otherwise). The
  console defaults to ITM/SWO; override `eedge_board_write()` with a UART writer
  (`make BOARD_SOURCES=uart.c`).
"""

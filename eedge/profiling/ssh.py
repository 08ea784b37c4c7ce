"""Profile a bundle on a Linux device over SSH (a Raspberry Pi 4, or anything like it).

Host keys are checked against the known_hosts file the target names (never
auto-accepted). The bundle's stage files (ONNX for ONNX Runtime, int8 TFLite
for LiteRT with XNNPACK), the data, eedge's Python source as a zip and a
small runner are copied to a temporary directory on the device; the runner
times the stages, the cascade's overhead and, with data, the cascade end to
end with the device's engines (eedge's own cascade code, so the device runs
what a user would), and the JSON it prints comes back; the directory is
removed afterwards.
"""

from __future__ import annotations

import io
import json
import shlex
import socket
from pathlib import Path
from typing import Any

import numpy as np

from eedge.errors import BundleError, TargetError
from eedge.ir.bundle import Bundle
from eedge.profiling.drivers import Progress, StageProfiles, stage_profiles
from eedge.targets import Target

RUNNER = Path(__file__).with_name("remote_runner.py")
# the batch-1 C helper's source, compiled on the device by the runner (package data)
ROW_DECIDE = Path(__file__).parents[1] / "runtime" / "_rowdecide.c"
CONNECT_TIMEOUT_S = 10


def connect(target: Target) -> Any:
    import paramiko

    ssh = target.get("ssh")
    host, port = ssh["host"], int(ssh.get("port", 22))
    where = f"{ssh['user']}@{host}:{port}"
    client = paramiko.SSHClient()
    known_hosts = Path(ssh.get("known_hosts", "~/.ssh/known_hosts")).expanduser()
    if not known_hosts.is_file():
        raise TargetError(f"known_hosts file {known_hosts} does not exist; add the device's "
                          f"host key (ssh-keyscan -p {port} {host} >> {known_hosts})")
    client.load_host_keys(str(known_hosts))
    client.set_missing_host_key_policy(paramiko.RejectPolicy())
    key = Path(ssh["key"]).expanduser()
    if not key.is_file():
        raise TargetError(f"SSH key {key} for {target.name} does not exist")
    try:
        client.connect(host, port=port, username=ssh["user"], key_filename=str(key),
                       timeout=CONNECT_TIMEOUT_S, banner_timeout=CONNECT_TIMEOUT_S,
                       auth_timeout=CONNECT_TIMEOUT_S, allow_agent=False, look_for_keys=False)
    except paramiko.AuthenticationException as exc:
        raise TargetError(f"{where} rejected the key {key}: add its public key to the "
                          "device's authorized_keys") from exc
    except paramiko.SSHException as exc:
        if "not found in known_hosts" in str(exc) or "known_hosts" in str(exc):
            raise TargetError(f"{where}: host key not in {known_hosts}; verify the device and "
                              "add its key (host-key checking stays on)") from exc
        raise TargetError(f"SSH to {where} failed: {exc}") from exc
    except (OSError, socket.timeout) as exc:
        raise TargetError(f"cannot reach {where}: {exc}; check the address, the port and "
                          "that sshd runs on the device") from exc
    return client


def run(client: Any, command: str, timeout: float = 600) -> tuple[int, str, str]:
    _, stdout, stderr = client.exec_command(command, timeout=timeout)
    out = stdout.read().decode(errors="replace")
    err = stderr.read().decode(errors="replace")
    return stdout.channel.recv_exit_status(), out, err


def open_sftp(client: Any, target: Target) -> Any:
    """The SFTP session the files are copied over; a device without one is a TargetError."""
    import paramiko

    try:
        return client.open_sftp()
    except (paramiko.SSHException, EOFError) as exc:
        raise TargetError(f"{target.name}: the device's sshd offers no SFTP subsystem ({exc}); "
                          "enable `Subsystem sftp internal-sftp` (or the sftp-server path) in "
                          "its /etc/ssh/sshd_config and restart sshd") from exc


# what each runtime imports on the device, and how a user installs it
ENGINES = {"onnx": ("onnxruntime", "onnxruntime"), "int8": ("ai_edge_litert", "ai-edge-litert"),
           "tflite": ("ai_edge_litert", "ai-edge-litert")}
DEVICE_RUNTIMES = tuple(ENGINES)


def device_runtime(target: Target, runtime: str | None) -> str:
    """The runtime to time on the device: the one asked for, else the target YAML's."""
    if runtime is None:
        runtime = {"onnxruntime": "onnx", "litert": "int8", "ai-edge-litert": "int8"}.get(
            str(target.get("runtime")), "onnx")
    if runtime not in ENGINES:
        raise TargetError(f"linux-ssh devices run {', '.join(DEVICE_RUNTIMES)} stages here "
                          f"(got {runtime!r}); TVM stages are timed over TVM RPC "
                          "(tvm_rpc: in the target YAML)")
    return runtime


def check_remote_runtime(client: Any, python: str, target: Target,
                         runtimes: tuple[str, ...] = ("onnx",)) -> dict[str, str]:
    """Import what the runner needs on the device; a missing package is a TargetError."""
    modules = ["numpy"] + sorted({ENGINES[r][0] for r in runtimes}) + ["jsonschema"]
    probe = ("import json, platform, importlib; mods = " + repr(modules) + "; "
             "[importlib.import_module(m) for m in mods]; "
             "print(json.dumps({'python': platform.python_version()}))")
    code, out, err = run(client, f"{shlex.quote(python)} -c {shlex.quote(probe)}", timeout=60)
    if code != 0:
        last = (err.strip().splitlines() or ["no output"])[-1]
        packages = " ".join(["numpy"] + sorted({ENGINES[r][1] for r in runtimes})
                            + ["jsonschema"])
        names = " and ".join(m for m in modules if m != "jsonschema")
        raise TargetError(f"{target.name}: `{python}` cannot import {names} (or jsonschema) "
                          f"({last}); install them on the device (pip install {packages}) "
                          "or set `python:` in the target YAML")
    return json.loads(out)


def eedge_source_zip() -> bytes:
    """eedge's Python source as a zip the device imports from (no install there)."""
    import zipfile

    import eedge

    root = Path(eedge.__file__).parent
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for path in sorted(root.rglob("*.py")):
            archive.write(path, str(path.relative_to(root.parent)))
    return buffer.getvalue()


def profile_ssh(bundle: Bundle, target: Target, x: np.ndarray, runtime: str | None,
                threads: int, warmup: int, repeats: int, say: Progress,
                stream: bool = False, batch: int = 1, rounds: int = 5) -> StageProfiles:
    """One runtime on the device (see :func:`profile_ssh_runtimes`)."""
    name = device_runtime(target, runtime)
    return profile_ssh_runtimes(bundle, target, x, (name,), threads, warmup, repeats, say,
                                stream, batch, rounds)[name]


def profile_ssh_runtimes(bundle: Bundle, target: Target, x: np.ndarray,
                         runtimes: tuple[str, ...], threads: int, warmup: int, repeats: int,
                         say: Progress, stream: bool = False, batch: int = 1,
                         rounds: int = 5) -> dict[str, StageProfiles]:
    """Time the stages (and with ``stream`` the cascade on ``x``) on the device.

    The stage files of every runtime, the manifest, eedge's source (a zip) and the
    runner go to a temporary directory on the device; the runner prints JSON.
    """
    runtimes = tuple(device_runtime(target, r) for r in runtimes)
    from eedge.runtime.stage_runners import RUNTIMES

    for name in runtimes:  # the stage files exist here before anything is copied
        fmt = RUNTIMES[name][0]
        if any(fmt not in s["files"] for s in bundle.stages):
            raise BundleError(f"{bundle.path} has no {fmt} stage files for --runtime {name}"
                              + ("; export with --int8 --calib DATA" if name == "int8" else ""))
    buffer = io.BytesIO()
    np.savez(buffer, x=np.ascontiguousarray(x if stream else x[:1]))
    request = {"runtimes": list(runtimes), "threads": threads, "warmup": warmup,
               "repeats": repeats, "stream": stream, "batch": batch, "rounds": rounds}
    import paramiko

    ssh = target.get("ssh")
    say(f"connecting to {ssh['user']}@{ssh['host']}")
    client = connect(target)
    try:
        versions = check_remote_runtime(client, target.get("python"), target, runtimes)
        code, remote_dir, err = run(client, "mktemp -d -t eedge-profile.XXXXXX", timeout=30)
        remote_dir = remote_dir.strip()
        if code != 0 or not remote_dir:
            raise TargetError(f"{target.name}: cannot create a temporary directory: {err}")
        try:
            say(f"copying {len(bundle.stages)} stages ({', '.join(runtimes)}) and eedge's "
                f"runner to {target.name}")
            sftp = open_sftp(client, target)
            files = ["manifest.json"] + sorted({s["files"][RUNTIMES[r][0]]
                                                for s in bundle.stages for r in runtimes})
            try:
                for name in files:
                    sftp.put(str(bundle.path / name), f"{remote_dir}/{name}")
                sftp.put(str(RUNNER), f"{remote_dir}/remote_runner.py")
                if ROW_DECIDE.is_file():
                    sftp.put(str(ROW_DECIDE), f"{remote_dir}/_rowdecide.c")
                sftp.putfo(io.BytesIO(eedge_source_zip()), f"{remote_dir}/eedge.zip")
                sftp.putfo(io.BytesIO(buffer.getvalue()), f"{remote_dir}/inputs.npz")
                sftp.putfo(io.BytesIO(json.dumps(request).encode()),
                           f"{remote_dir}/request.json")
            except (OSError, EOFError, paramiko.SSHException, paramiko.SFTPError) as exc:
                raise TargetError(f"copying the stages to {target.name} failed: {exc}; check "
                                  "the device's free space and its temporary directory") from exc
            finally:
                sftp.close()
            say(f"timing on {target.name} ({repeats} passes" +
                (f", the cascade on {len(x)} samples" if stream else "") + ")")
            command = " ".join(shlex.quote(a) for a in (
                target.get("python"), f"{remote_dir}/remote_runner.py", remote_dir,
                f"{remote_dir}/eedge.zip", f"{remote_dir}/inputs.npz",
                f"{remote_dir}/request.json"))
            code, out, err = run(client, command)
            if code != 0:
                raise TargetError(f"the runner failed on {target.name}: "
                                  f"{(err.strip().splitlines() or ['no output'])[-1]}")
            result = json.loads(out)
        finally:
            run(client, f"rm -rf {shlex.quote(remote_dir)}", timeout=30)
    finally:
        client.close()
    device = f"{ssh['user']}@{ssh['host']}:{ssh.get('port', 22)}"
    profiles = {}
    for name in runtimes:
        entry = result["runtimes"][name]
        env = {k: v for k, v in result.items() if k != "runtimes"}
        env.update({**versions, "machine": result["machine"], "threads": threads,
                    "runtime": name, "device": device})
        if "xnnpack" in entry:
            env["xnnpack"] = entry["xnnpack"]
        timing = entry["timing"]
        profiles[name] = StageProfiles(target.name, target.kind, "ms",
                                       f"{name} (on the device)",
                                       stage_profiles(bundle.stages, timing["stage_ms"]), env,
                                       timing if stream else None)
    return profiles

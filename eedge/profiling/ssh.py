"""Profile a bundle on a Linux device over SSH (a Raspberry Pi 4, or anything like it).

Host keys are checked against the known_hosts file the target names (never
auto-accepted). The bundle's ONNX stages, one sample's stage inputs and a
small standalone runner are copied to a temporary directory on the device,
the runner times each stage with the device's ONNX Runtime, and the JSON it
prints comes back; the directory is removed afterwards.
"""

from __future__ import annotations

import io
import json
import shlex
import socket
from pathlib import Path
from typing import Any

import numpy as np

from eedge.errors import TargetError
from eedge.ir.bundle import Bundle
from eedge.profiling.drivers import Progress, StageProfile, StageProfiles, stage_feeds
from eedge.profiling.stats import summarize
from eedge.runtime.cascade import Cascade
from eedge.targets import Target

RUNNER = Path(__file__).with_name("remote_runner.py")
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


def check_remote_runtime(client: Any, python: str, target: Target) -> dict[str, str]:
    probe = ("import json, platform, numpy, onnxruntime; print(json.dumps({'python': "
             "platform.python_version(), 'numpy': numpy.__version__, 'onnxruntime': "
             "onnxruntime.__version__}))")
    code, out, err = run(client, f"{shlex.quote(python)} -c {shlex.quote(probe)}", timeout=60)
    if code != 0:
        last = (err.strip().splitlines() or ["no output"])[-1]
        raise TargetError(f"{target.name}: `{python}` cannot import numpy and onnxruntime "
                          f"({last}); install them on the device (pip install onnxruntime "
                          "numpy) or set `python:` in the target YAML")
    return json.loads(out)


def profile_ssh(bundle: Bundle, target: Target, x: np.ndarray, runtime: str | None,
                threads: int, warmup: int, repeats: int, say: Progress) -> StageProfiles:
    if runtime not in (None, "onnx") or target.get("runtime") != "onnxruntime":
        raise TargetError("linux-ssh profiling runs the ONNX stages with onnxruntime on the "
                          "device (runtime: onnxruntime in the target YAML)")
    cascade = Cascade(bundle, runtime="onnx")
    feeds = stage_feeds(cascade, x)
    arrays = {f"{stage['index']}/{t['name']}": value
              for stage, io, inputs in zip(cascade.stages, cascade.io, feeds)
              for t, value in zip(io["inputs"], inputs)}
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    import paramiko

    ssh = target.get("ssh")
    say(f"connecting to {ssh['user']}@{ssh['host']}")
    client = connect(target)
    try:
        versions = check_remote_runtime(client, target.get("python"), target)
        code, remote_dir, err = run(client, "mktemp -d -t eedge-profile.XXXXXX", timeout=30)
        remote_dir = remote_dir.strip()
        if code != 0 or not remote_dir:
            raise TargetError(f"{target.name}: cannot create a temporary directory: {err}")
        try:
            say(f"copying {len(bundle.stages)} stages to {target.name}")
            sftp = open_sftp(client, target)
            files = ["manifest.json"] + [s["files"]["onnx"] for s in bundle.stages]
            try:
                for name in files:
                    sftp.put(str(bundle.path / name), f"{remote_dir}/{name}")
                sftp.put(str(RUNNER), f"{remote_dir}/remote_runner.py")
                sftp.putfo(io.BytesIO(buffer.getvalue()), f"{remote_dir}/inputs.npz")
            except (OSError, EOFError, paramiko.SSHException, paramiko.SFTPError) as exc:
                raise TargetError(f"copying the stages to {target.name} failed: {exc}; check "
                                  "the device's free space and its temporary directory") from exc
            finally:
                sftp.close()
            say(f"timing stages on {target.name} ({repeats} runs each)")
            command = " ".join(shlex.quote(a) for a in (
                target.get("python"), f"{remote_dir}/remote_runner.py", remote_dir,
                f"{remote_dir}/inputs.npz", str(threads), str(warmup), str(repeats)))
            code, out, err = run(client, command)
            if code != 0:
                raise TargetError(f"the runner failed on {target.name}: "
                                  f"{(err.strip().splitlines() or ['no output'])[-1]}")
            result = json.loads(out)
        finally:
            run(client, f"rm -rf {shlex.quote(remote_dir)}", timeout=30)
    finally:
        client.close()
    stages = []
    for stage, timing in zip(bundle.stages, result["stages"]):
        stats = summarize(timing["times_ms"])
        stages.append(StageProfile(stage["index"], stage["name"], stage["macs"], stats["p50"],
                                   stats))
    env = {**versions, "machine": result["machine"], "threads": threads, "runtime": "onnx",
           "device": f"{ssh['user']}@{ssh['host']}:{ssh.get('port', 22)}"}
    return StageProfiles(target.name, target.kind, "ms", "onnx (on the device)", stages, env)

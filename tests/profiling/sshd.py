"""A throwaway sshd on 127.0.0.1 standing in for a Raspberry Pi (tests only)."""

from __future__ import annotations

import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

SSHD = Path("/usr/sbin/sshd")


@dataclass
class FakePi:
    port: int
    client_key: Path
    known_hosts: Path
    user: str

    def target_yaml(self, path: Path, python: str = sys.executable, **ssh: object) -> Path:
        fields = {"host": "127.0.0.1", "port": self.port, "user": self.user,
                  "key": str(self.client_key), "known_hosts": str(self.known_hosts), **ssh}
        ssh_lines = "".join(f"  {k}: {v}\n" for k, v in fields.items())
        path.write_text("name: test-pi\nkind: linux-ssh\ndescription: local sshd stand-in\n"
                        "cpu: cortex-a72\nclock_hz: 1500000000\n"
                        f"ssh:\n{ssh_lines}python: {python}\nruntime: onnxruntime\n")
        return path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def fake_pi(workdir: Path, sftp: bool = True) -> Iterator[FakePi]:
    """sshd on a free loopback port; ``sftp=False`` leaves out the SFTP subsystem."""
    if not SSHD.exists() or shutil.which("ssh-keygen") is None:
        raise RuntimeError("openssh-server is not installed (make setup installs it)")
    import getpass

    workdir.mkdir(parents=True, exist_ok=True)
    host_key, client_key = workdir / "host_ed25519", workdir / "client_ed25519"
    for key in (host_key, client_key):
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)],
                       check=True)
    authorized = workdir / "authorized_keys"
    authorized.write_text(client_key.with_suffix(".pub").read_text())
    port = free_port()
    host_public = host_key.with_suffix(".pub").read_text().split()
    known_hosts = workdir / "known_hosts"
    known_hosts.write_text(f"[127.0.0.1]:{port} {host_public[0]} {host_public[1]}\n")
    config = workdir / "sshd_config"
    config.write_text(f"ListenAddress 127.0.0.1\nPort {port}\nHostKey {host_key}\n"
                      f"AuthorizedKeysFile {authorized}\nPasswordAuthentication no\n"
                      "KbdInteractiveAuthentication no\nUsePAM no\nStrictModes no\n"
                      f"PidFile {workdir / 'sshd.pid'}\n"
                      + ("Subsystem sftp internal-sftp\n" if sftp else "")
                      + "PermitRootLogin yes\n")
    Path("/run/sshd").mkdir(parents=True, exist_ok=True)
    process = subprocess.Popen([str(SSHD), "-D", "-e", "-f", str(config)],
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            with socket.socket() as s:
                if s.connect_ex(("127.0.0.1", port)) == 0:
                    break
            if process.poll() is not None:
                raise RuntimeError(f"sshd exited: {process.stderr.read().decode()[-300:]}")
            time.sleep(0.05)
        yield FakePi(port, client_key, known_hosts, getpass.getuser())
    finally:
        process.terminate()
        process.wait(timeout=10)

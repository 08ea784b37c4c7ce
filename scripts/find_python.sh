#!/usr/bin/env bash
# Resolve a Python name (python3, python3.13, or a path) to an interpreter that runs, and
# print "EXECUTABLE X.Y". A pyenv shim for a version that is installed but not selected
# ("pyenv: python3.13: command not found") is resolved through `pyenv whence`, so
# `make test PYTHON=python3.13` works without changing pyenv's global version.
# Exits 1 with nothing on stdout when no interpreter provides the name.
set -u
name=${1:?usage: find_python.sh PYTHON}
probe='import sys; print(sys.executable, "%d.%d" % sys.version_info[:2])'

if out=$("$name" -c "$probe" 2>/dev/null) && [ -n "$out" ]; then
  echo "$out"
  exit 0
fi
if command -v pyenv >/dev/null 2>&1; then
  root=$(pyenv root)
  for version in $(pyenv whence "$name" 2>/dev/null); do
    exe="$root/versions/$version/bin/$name"
    if [ -x "$exe" ] && out=$("$exe" -c "$probe" 2>/dev/null) && [ -n "$out" ]; then
      echo "$out"
      exit 0
    fi
  done
fi
exit 1

#!/usr/bin/env bash
# Probe the system tools the tests and the demo really use, by using them: a binary on
# PATH can hide a missing library (the aarch64 cross gcc without libc6-dev-arm64-cross
# cannot link: "cannot find crti.o"). Prints what is missing, exits 1 if anything is.
set -u
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
missing=()
printf 'int main(void){return 0;}\n' > "$tmp/main.c"
printf 'int f(int x){return x+1;}\n' > "$tmp/lib.c"

# Cortex-M firmware: compile and link against newlib-nano, as generated projects do.
arm-none-eabi-gcc -mcpu=cortex-m4 -mthumb -mfloat-abi=hard -mfpu=fpv4-sp-d16 --specs=nano.specs \
  --specs=nosys.specs "$tmp/main.c" -o "$tmp/m4.elf" >/dev/null 2>&1 \
  || missing+=("arm-none-eabi-gcc+newlib-nano")
# QEMU with the MPS2 boards the firmware tests run on.
qemu-system-arm -machine help 2>/dev/null | grep -q mps2-an386 || missing+=("qemu-system-arm(mps2-an386)")
# sshd stands in for a Raspberry Pi in the profiler's tests.
[ -x /usr/sbin/sshd ] && command -v ssh-keygen >/dev/null || missing+=("openssh-server")
# The aarch64 cross gcc links TVM's shared libraries for the Pi (needs crti.o and libc).
aarch64-linux-gnu-gcc -shared -fPIC "$tmp/lib.c" -o "$tmp/lib.so" >/dev/null 2>&1 \
  || missing+=("aarch64-linux-gnu-gcc+libc6-dev-arm64-cross")

if [ ${#missing[@]} -gt 0 ]; then
  echo "system tools missing or unusable: ${missing[*]}"
  exit 1
fi

/* Arm semihosting: the debugger (here QEMU) prints for us and takes the exit code. */
#ifndef EEDGE_SEMIHOSTING_H
#define EEDGE_SEMIHOSTING_H

#include <stdint.h>

static inline int32_t semihosting_call(int32_t operation, const void *argument) {
    register int32_t r0 __asm__("r0") = operation;
    register const void *r1 __asm__("r1") = argument;
    __asm__ volatile("bkpt 0xAB" : "+r"(r0) : "r"(r1) : "memory");
    return r0;
}

static inline void semihosting_write0(const char *text) {
    semihosting_call(0x04, text); /* SYS_WRITE0 */
}

__attribute__((noreturn)) static inline void semihosting_exit(int32_t code) {
    const uint32_t block[2] = {0x20026u, (uint32_t)code}; /* ADP_Stopped_ApplicationExit */
    semihosting_call(0x20, block);                         /* SYS_EXIT_EXTENDED */
    for (;;) {
    }
}

#endif /* EEDGE_SEMIHOSTING_H */

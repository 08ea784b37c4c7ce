/* MPS2 (QEMU mps2-an386 / an500) port: SysTick ticks, semihosting console and exit.
 *
 * DWT CYCCNT is not emulated by QEMU, so time comes from SysTick counting the core
 * clock; under `-icount shift=0` one tick is a fixed number of guest instructions,
 * which makes per-stage figures exact and repeatable. */
#include <stdint.h>

#include "eedge/platform.h"
#include "semihosting.h"

#define SYST_CSR (*(volatile uint32_t *)0xE000E010u)
#define SYST_RVR (*(volatile uint32_t *)0xE000E014u)
#define SYST_CVR (*(volatile uint32_t *)0xE000E018u)
#define SYSTICK_RELOAD 0x00FFFFFFu

static volatile uint32_t systick_wraps;

void SysTick_Handler(void) {
    ++systick_wraps;
}

void eedge_platform_init(void) {
    SYST_RVR = SYSTICK_RELOAD;
    SYST_CVR = 0;
    SYST_CSR = 0x7u; /* processor clock, interrupt on wrap, enable */
}

uint32_t eedge_platform_ticks(void) {
    uint32_t wraps, value;
    do {
        wraps = systick_wraps;
        value = SYST_CVR;
    } while (wraps != systick_wraps);
    return wraps * (SYSTICK_RELOAD + 1u) + (SYSTICK_RELOAD - value);
}

void eedge_platform_print(const char *text) {
    semihosting_write0(text);
}

void eedge_port_exit(int32_t code) {
    semihosting_exit(code);
}

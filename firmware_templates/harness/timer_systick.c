/* SysTick as a 32-bit tick counter (24-bit hardware counter + wrap interrupt).
 * Used by the QEMU port (DWT CYCCNT is not emulated) and by boards configured with
 * `timer: systick`. */
#include <stdint.h>

#define SYST_CSR (*(volatile uint32_t *)0xE000E010u)
#define SYST_RVR (*(volatile uint32_t *)0xE000E014u)
#define SYST_CVR (*(volatile uint32_t *)0xE000E018u)
#define SYSTICK_RELOAD 0x00FFFFFFu

static volatile uint32_t systick_wraps;

void SysTick_Handler(void) {
    ++systick_wraps;
}

void eedge_systick_start(void) {
    SYST_RVR = SYSTICK_RELOAD;
    SYST_CVR = 0;
    SYST_CSR = 0x7u; /* processor clock, interrupt on wrap, enable */
}

uint32_t eedge_systick_ticks(void) {
    uint32_t wraps, value;
    do {
        wraps = systick_wraps;
        value = SYST_CVR;
    } while (wraps != systick_wraps);
    return wraps * (SYSTICK_RELOAD + 1u) + (SYSTICK_RELOAD - value);
}

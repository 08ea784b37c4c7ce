/* Real Cortex-M3/M4/M7 boards: cycle-exact ticks from the DWT cycle counter.
 * Console output goes through eedge_board_write(); the default writes to ITM
 * stimulus port 0 (SWO, read by pyocd/openocd), a board overrides it with its UART.
 * No heap, no printf. */
#include <stdint.h>

#include "eedge/platform.h"

#define DEMCR (*(volatile uint32_t *)0xE000EDFCu)
#define DWT_CTRL (*(volatile uint32_t *)0xE0001000u)
#define DWT_CYCCNT (*(volatile uint32_t *)0xE0001004u)
#define DWT_LAR (*(volatile uint32_t *)0xE0001FB0u)

#define ITM_STIM0 (*(volatile uint32_t *)0xE0000000u)
#define ITM_TER (*(volatile uint32_t *)0xE0000E00u)
#define ITM_TCR (*(volatile uint32_t *)0xE0000E80u)

__attribute__((weak)) void eedge_board_write(const char *text) {
    if (!(ITM_TCR & 1u) || !(ITM_TER & 1u)) {
        return; /* no debugger listening on SWO */
    }
    while (*text) {
        while (ITM_STIM0 == 0u) {
        }
        *(volatile uint8_t *)0xE0000000u = (uint8_t)*text++;
    }
}

void eedge_platform_init(void) {
    DEMCR |= (1u << 24);   /* TRCENA */
    DWT_LAR = 0xC5ACCE55u; /* unlock (needed on M7, ignored elsewhere) */
    DWT_CYCCNT = 0;
    DWT_CTRL |= 1u;        /* CYCCNTENA */
}

uint32_t eedge_platform_ticks(void) {
    return DWT_CYCCNT;
}

void eedge_platform_print(const char *text) {
    eedge_board_write(text);
}

void eedge_port_exit(int32_t code) {
    (void)code;
    for (;;) {
        __asm__ volatile("wfi");
    }
}

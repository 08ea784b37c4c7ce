/* Real Cortex-M3/M4/M7 boards: cycle-exact ticks from the DWT cycle counter.
 * Console output goes through eedge_board_write(), which the board's BSP provides
 * (e.g. a UART transmit loop); no heap, no printf. */
#include <stdint.h>

#include "eedge/platform.h"

#define DEMCR (*(volatile uint32_t *)0xE000EDFCu)
#define DWT_CTRL (*(volatile uint32_t *)0xE0001000u)
#define DWT_CYCCNT (*(volatile uint32_t *)0xE0001004u)
#define DWT_LAR (*(volatile uint32_t *)0xE0001FB0u)

extern void eedge_board_write(const char *text);

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

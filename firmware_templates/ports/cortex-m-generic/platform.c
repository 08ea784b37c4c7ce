/* Real Cortex-M3/M4/M7 boards. Ticks: the DWT cycle counter (cycle-exact), or SysTick
 * with EEDGE_TIMER_SYSTICK. Console text: eedge_board_write(), by default ITM port 0
 * (SWO). Profiling frames: a CMSDK UART with EEDGE_UART_CMSDK (MPS2/MPS3 boards), else
 * eedge_board_serial_write(), by default ITM port 1; a board's BSP overrides either
 * with its own UART. No heap, no printf. */
#include <stdint.h>

#include "eedge/platform.h"

#define DEMCR (*(volatile uint32_t *)0xE000EDFCu)
#define DWT_CTRL (*(volatile uint32_t *)0xE0001000u)
#define DWT_CYCCNT (*(volatile uint32_t *)0xE0001004u)
#define DWT_LAR (*(volatile uint32_t *)0xE0001FB0u)
#define ITM_PORT(n) (*(volatile uint32_t *)(0xE0000000u + 4u * (n)))
#define ITM_TER (*(volatile uint32_t *)0xE0000E00u)
#define ITM_TCR (*(volatile uint32_t *)0xE0000E80u)

extern void eedge_systick_start(void);
extern uint32_t eedge_systick_ticks(void);
extern void eedge_uart_start(uint32_t bauddiv);
extern void eedge_uart_write(const uint8_t *data, int32_t size);

static void itm_write(uint32_t port, const uint8_t *data, int32_t size) {
    int32_t i;
    if (!(ITM_TCR & 1u) || !(ITM_TER & (1u << port))) {
        return; /* no debugger listening on SWO */
    }
    for (i = 0; i < size; ++i) {
        while (ITM_PORT(port) == 0u) {
        }
        *(volatile uint8_t *)&ITM_PORT(port) = data[i];
    }
}

__attribute__((weak)) void eedge_board_write(const char *text) {
    int32_t n = 0;
    while (text[n]) {
        ++n;
    }
    itm_write(0u, (const uint8_t *)text, n);
}

__attribute__((weak)) void eedge_board_serial_write(const uint8_t *data, int32_t size) {
#if defined(EEDGE_UART_CMSDK)
    eedge_uart_write(data, size);
#else
    itm_write(1u, data, size);
#endif
}

void eedge_platform_init(void) {
#if defined(EEDGE_UART_CMSDK)
    eedge_uart_start(16u);
#endif
#if defined(EEDGE_TIMER_SYSTICK)
    eedge_systick_start();
#else
    DEMCR |= (1u << 24);   /* TRCENA */
    DWT_LAR = 0xC5ACCE55u; /* unlock (needed on M7, ignored elsewhere) */
    DWT_CYCCNT = 0;
    DWT_CTRL |= 1u;        /* CYCCNTENA */
#endif
}

uint32_t eedge_platform_ticks(void) {
#if defined(EEDGE_TIMER_SYSTICK)
    return eedge_systick_ticks();
#else
    return DWT_CYCCNT;
#endif
}

void eedge_platform_print(const char *text) {
    eedge_board_write(text);
}

void eedge_platform_serial_write(const uint8_t *data, int32_t size) {
    eedge_board_serial_write(data, size);
}

void eedge_port_exit(int32_t code) {
    (void)code;
    for (;;) {
        __asm__ volatile("wfi");
    }
}

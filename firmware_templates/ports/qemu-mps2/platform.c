/* MPS2 (QEMU mps2-an386 / an500) port: SysTick ticks, semihosting console and exit,
 * profiling frames on UART0.
 *
 * DWT CYCCNT is not emulated by QEMU, so time comes from SysTick counting the core
 * clock; under `-icount shift=0` one tick is a fixed number of guest instructions,
 * which makes per-stage figures exact and repeatable. */
#include <stdint.h>

#include "eedge/platform.h"
#include "semihosting.h"

extern void eedge_systick_start(void);
extern uint32_t eedge_systick_ticks(void);
extern void eedge_uart_start(uint32_t bauddiv);
extern void eedge_uart_write(const uint8_t *data, int32_t size);

void eedge_platform_init(void) {
    eedge_uart_start(16u);
    eedge_systick_start();
}

uint32_t eedge_platform_ticks(void) {
    return eedge_systick_ticks();
}

void eedge_platform_print(const char *text) {
    semihosting_write0(text);
}

void eedge_platform_serial_write(const uint8_t *data, int32_t size) {
    eedge_uart_write(data, size);
}

void eedge_port_exit(int32_t code) {
    semihosting_exit(code);
}

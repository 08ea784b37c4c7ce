/* Arm CMSDK APB UART (MPS2/MPS3 boards, and QEMU's models of them): transmit only. */
#include <stdint.h>

#ifndef EEDGE_UART_CMSDK_BASE
#define EEDGE_UART_CMSDK_BASE 0x40004000u
#endif
#define UART_DATA (*(volatile uint32_t *)(EEDGE_UART_CMSDK_BASE + 0x0u))
#define UART_STATE (*(volatile uint32_t *)(EEDGE_UART_CMSDK_BASE + 0x4u))
#define UART_CTRL (*(volatile uint32_t *)(EEDGE_UART_CMSDK_BASE + 0x8u))
#define UART_BAUDDIV (*(volatile uint32_t *)(EEDGE_UART_CMSDK_BASE + 0x10u))

void eedge_uart_start(uint32_t bauddiv) {
    UART_BAUDDIV = bauddiv < 16u ? 16u : bauddiv;
    UART_CTRL = 1u; /* transmitter on */
}

void eedge_uart_write(const uint8_t *data, int32_t size) {
    int32_t i;
    for (i = 0; i < size; ++i) {
        while (UART_STATE & 1u) { /* transmit buffer full */
        }
        UART_DATA = data[i];
    }
}

/* Minimal Cortex-M startup shared by the MCU ports: vector table, .data/.bss setup,
 * FPU on, stack painting (for the stack high-water mark). The port decides what
 * "exit" means: QEMU ends the emulation through semihosting, a board parks. */
#include <stdint.h>
#include <string.h>

#include "eedge/platform.h"

extern void eedge_port_exit(int32_t code) __attribute__((noreturn));

extern uint32_t _sidata, _sdata, _edata, _sbss, _ebss, _estack, _sstack;
extern int main(void);
void Reset_Handler(void);
void Default_Handler(void);
void SysTick_Handler(void);

#define STACK_PAINT 0xA5A5A5A5u

__attribute__((section(".isr_vector"), used)) static void (*const vectors[16])(void) = {
    (void (*)(void))(&_estack), Reset_Handler, Default_Handler, Default_Handler,
    Default_Handler, Default_Handler, Default_Handler, 0, 0, 0, 0, Default_Handler,
    Default_Handler, 0, Default_Handler, SysTick_Handler,
};

void Default_Handler(void) {
    eedge_platform_print("FAULT: unexpected exception\n");
    eedge_port_exit(3);
}

/* Bytes of stack ever used: the painted words at the bottom that are still intact. */
uint32_t eedge_stack_high_water(void) {
    const uint32_t *word = &_sstack;
    while (word < &_estack && *word == STACK_PAINT) {
        ++word;
    }
    return (uint32_t)((const uint8_t *)&_estack - (const uint8_t *)word);
}

__attribute__((naked, noreturn)) void Reset_Handler(void) {
    __asm__ volatile(
        "ldr r0, =_sstack\n"
        "ldr r1, =0xA5A5A5A5\n"
        "mov r2, sp\n"
        "1: cmp r0, r2\n"
        "bhs 2f\n"
        "str r1, [r0], #4\n"
        "b 1b\n"
        "2: bl eedge_reset_c\n"
        "b .\n");
}

__attribute__((used, noreturn)) void eedge_reset_c(void) {
    memcpy(&_sdata, &_sidata, (size_t)((uint8_t *)&_edata - (uint8_t *)&_sdata));
    memset(&_sbss, 0, (size_t)((uint8_t *)&_ebss - (uint8_t *)&_sbss));
#if defined(__ARM_FP)
    *(volatile uint32_t *)0xE000ED88u |= (0xFu << 20); /* CPACR: CP10, CP11 full access */
    __asm__ volatile("dsb\nisb");
#endif
    eedge_port_exit(main());
}

/* Host port: ticks from the C clock, console on stderr (stdout carries results). */
#include <stdio.h>
#include <time.h>

#include "eedge/platform.h"

void eedge_platform_init(void) {}

uint32_t eedge_platform_ticks(void) {
    return (uint32_t)clock();
}

void eedge_platform_print(const char *text) {
    fputs(text, stderr);
}

void eedge_platform_serial_write(const uint8_t *data, int32_t size) {
    fwrite(data, 1, (size_t)size, stderr);
}

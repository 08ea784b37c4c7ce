/* The seam between the runtime and a board: a tick counter and a console.
 * Each port (host, qemu-mps2, cortex-m-generic) implements these functions.
 */
#ifndef EEDGE_PLATFORM_H
#define EEDGE_PLATFORM_H

#include <stdint.h>

void eedge_platform_init(void);
uint32_t eedge_platform_ticks(void);      /* monotonic; wraps at 2^32 */
void eedge_platform_print(const char *text);
/* Raw bytes to the serial link the profiler reads (framed protocol, see eedge docs). */
void eedge_platform_serial_write(const uint8_t *data, int32_t size);

#endif /* EEDGE_PLATFORM_H */

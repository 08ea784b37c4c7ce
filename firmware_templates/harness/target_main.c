/* On-target check and profile (MCU ports): runs the embedded test inputs and prints,
 * per sample, every stage output (hex, whole, in lines of up to 4096 bytes), the
 * decision and the ticks of each stage, then the stack high-water mark. eedge parses
 * these lines. */
#include <stdint.h>
#include <string.h>

#include "eedge/platform.h"
#include "model.h"

extern const int32_t eedge_test_input_count;
extern const int8_t eedge_test_inputs[][EEDGE_INPUT_BYTES];
extern uint32_t eedge_stack_high_water(void);

static char line[2 * 4096 + 64];

/* Framed profiling output (EEDGE_SERIAL_FRAMES): A5 5A, type, length, payload, CRC-16. */
#if defined(EEDGE_SERIAL_FRAMES)
static uint16_t crc16_ccitt(const uint8_t *data, int32_t size, uint16_t crc) {
    int32_t i;
    int bit;
    for (i = 0; i < size; ++i) {
        crc ^= (uint16_t)(data[i] << 8);
        for (bit = 0; bit < 8; ++bit) {
            crc = (crc & 0x8000u) ? (uint16_t)((crc << 1) ^ 0x1021u) : (uint16_t)(crc << 1);
        }
    }
    return crc;
}

static void put_u32(uint8_t *p, uint32_t v) {
    p[0] = (uint8_t)v;
    p[1] = (uint8_t)(v >> 8);
    p[2] = (uint8_t)(v >> 16);
    p[3] = (uint8_t)(v >> 24);
}

static void send_frame(uint8_t type, const uint8_t *payload, uint16_t size) {
    static uint8_t frame[5 + 12 + 4 * EEDGE_MAX_STAGES + 2];
    uint16_t crc;
    int32_t i;
    frame[0] = 0xA5;
    frame[1] = 0x5A;
    frame[2] = type;
    frame[3] = (uint8_t)size;
    frame[4] = (uint8_t)(size >> 8);
    for (i = 0; i < size; ++i) {
        frame[5 + i] = payload[i];
    }
    crc = crc16_ccitt(frame + 2, 3 + size, 0xFFFFu);
    frame[5 + size] = (uint8_t)crc;
    frame[6 + size] = (uint8_t)(crc >> 8);
    eedge_platform_serial_write(frame, 7 + size);
}

static void send_sample(int32_t n, const eedge_result *r) {
    uint8_t payload[12 + 4 * EEDGE_MAX_STAGES];
    int32_t s;
    put_u32(payload, (uint32_t)n);
    put_u32(payload + 4, (uint32_t)r->exit_index);
    put_u32(payload + 8, (uint32_t)r->class_index);
    for (s = 0; s < EEDGE_NUM_STAGES; ++s) {
        put_u32(payload + 12 + 4 * s, s < r->stages_run ? r->stage_ticks[s] : 0u);
    }
    send_frame(0x02, payload, (uint16_t)(12 + 4 * EEDGE_NUM_STAGES));
}
#endif

static char *put_text(char *p, const char *text) {
    while (*text) {
        *p++ = *text++;
    }
    return p;
}

static char *put_int(char *p, int32_t v) {
    char digits[12];
    int n = 0;
    uint32_t u = v < 0 ? (uint32_t)(-(v + 1)) + 1u : (uint32_t)v;
    if (v < 0) {
        *p++ = '-';
    }
    do {
        digits[n++] = (char)('0' + u % 10u);
        u /= 10u;
    } while (u);
    while (n) {
        *p++ = digits[--n];
    }
    return p;
}

static char *put_hex(char *p, const int8_t *data, int32_t bytes) {
    static const char hex[] = "0123456789abcdef";
    int32_t i;
    for (i = 0; i < bytes; ++i) {
        const uint8_t b = (uint8_t)data[i];
        *p++ = hex[b >> 4];
        *p++ = hex[b & 15];
    }
    return p;
}

int main(void) {
    int32_t n, s, i, bytes;
    eedge_platform_init();
#if defined(EEDGE_SERIAL_FRAMES)
    {
        const uint8_t hello[2] = {1u, (uint8_t)EEDGE_NUM_STAGES};
        send_frame(0x01, hello, 2);
    }
#endif
    for (n = 0; n < eedge_test_input_count; ++n) {
        eedge_result result;
        memcpy(eedge_input(), eedge_test_inputs[n], EEDGE_INPUT_BYTES);
        for (s = 0; s < EEDGE_NUM_STAGES; ++s) {
            eedge_run_stage(s);
            for (i = 0; i < eedge_stage_output_count(s); ++i) {
                const int8_t *out = eedge_stage_output(s, i, &bytes);
                int32_t done = 0;
                /* lines of at most 4096 bytes; the host joins the lines of one output */
                do {
                    const int32_t chunk = bytes - done > 4096 ? 4096 : bytes - done;
                    char *p = put_text(line, "O ");
                    p = put_int(p, n);
                    p = put_text(p, " ");
                    p = put_int(p, s);
                    p = put_text(p, " ");
                    p = put_int(p, i);
                    p = put_text(p, " ");
                    p = put_hex(p, out + done, chunk);
                    p = put_text(p, "\n");
                    *p = 0;
                    eedge_platform_print(line);
                    done += chunk;
                } while (done < bytes);
            }
        }
        memcpy(eedge_input(), eedge_test_inputs[n], EEDGE_INPUT_BYTES);
        eedge_infer(&result);
#if defined(EEDGE_SERIAL_FRAMES)
        send_sample(n, &result);
#endif
        {
            char *p = put_text(line, "D ");
            p = put_int(p, n);
            p = put_text(p, " ");
            p = put_int(p, result.exit_index);
            p = put_text(p, " ");
            p = put_int(p, result.class_index);
            p = put_text(p, " ");
            p = put_int(p, result.confidence);
            p = put_text(p, " ");
            p = put_int(p, result.rejected);
            p = put_text(p, " ");
            p = put_int(p, result.monitor_flag);
            p = put_text(p, " ");
            p = put_int(p, result.stages_run);
            for (s = 0; s < result.stages_run; ++s) {
                p = put_text(p, " ");
                p = put_int(p, (int32_t)result.stage_ticks[s]);
            }
            p = put_text(p, "\n");
            *p = 0;
            eedge_platform_print(line);
        }
    }
#if defined(EEDGE_SERIAL_FRAMES)
    send_frame(0x03, 0, 0);
#endif
    {
        char *p = put_text(line, "STACK ");
        p = put_int(p, (int32_t)eedge_stack_high_water());
        p = put_text(p, "\nEND\n");
        *p = 0;
        eedge_platform_print(line);
    }
    return 0;
}

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
    uint8_t head[5];
    uint8_t tail[2];
    uint16_t crc;
    head[0] = 0xA5;
    head[1] = 0x5A;
    head[2] = type;
    head[3] = (uint8_t)size;
    head[4] = (uint8_t)(size >> 8);
    crc = crc16_ccitt(payload, size, crc16_ccitt(head + 2, 3, 0xFFFFu));
    tail[0] = (uint8_t)crc;
    tail[1] = (uint8_t)(crc >> 8);
    eedge_platform_serial_write(head, 5);
    if (size) {
        eedge_platform_serial_write(payload, size);
    }
    eedge_platform_serial_write(tail, 2);
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

#if defined(EEDGE_SPLIT_HEAD)
/* A split head's hand-off (frame 0x05, in chunks the host's frame reader takes):
 * u32 sample, u32 offset, u32 total bytes, then up to 480 bytes of the int8 cut
 * tensors, concatenated in the order of the head bundle's cut_tensors. */
#define HANDOFF_CHUNK 480
static void send_handoff(int32_t n) {
    static uint8_t payload[12 + HANDOFF_CHUNK];
    int32_t t, bytes, done, sent = 0;
    for (t = 0; t < EEDGE_HANDOFF_COUNT; ++t) {
        const int8_t *data = eedge_handoff(t, &bytes);
        for (done = 0; done < bytes;) {
            const int32_t chunk = bytes - done > HANDOFF_CHUNK ? HANDOFF_CHUNK : bytes - done;
            put_u32(payload, (uint32_t)n);
            put_u32(payload + 4, (uint32_t)sent);
            put_u32(payload + 8, (uint32_t)EEDGE_HANDOFF_BYTES);
            memcpy(payload + 12, data + done, (size_t)chunk);
            send_frame(0x05, payload, (uint16_t)(12 + chunk));
            done += chunk;
            sent += chunk;
        }
    }
}
#endif
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

#if defined(EEDGE_SPLIT_HEAD) && defined(EEDGE_SERIAL_FRAMES)
/* Split head: per sample the head's stages and exits; a SAMPLE frame (exit -1 when no
 * exit took it) and, for those, the hand-off frames. The device does not wait for the
 * server's decision (the host pairs it with the sample number): sensing goes on at the
 * head's pace whatever the link does, and the UART needs no receive path. */
int main(void) {
    int32_t n;
    const uint8_t hello[2] = {1u, (uint8_t)EEDGE_NUM_STAGES};
    eedge_platform_init();
    send_frame(0x01, hello, 2);
    for (n = 0; n < eedge_test_input_count; ++n) {
        eedge_result result;
        memcpy(eedge_input(), eedge_test_inputs[n], EEDGE_INPUT_BYTES);
        eedge_infer(&result);
        send_sample(n, &result);
        if (result.exit_index < 0) {
            send_handoff(n);
        }
    }
    send_frame(0x03, 0, 0);
    {
        char *p = put_text(line, "STACK ");
        p = put_int(p, (int32_t)eedge_stack_high_water());
        p = put_text(p, "\nEND\n");
        *p = 0;
        eedge_platform_print(line);
    }
    for (;;) { /* a device stays up (an exit could cut the UART's last bytes off) */
        __asm__ volatile("wfi");
    }
}
#else
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
#endif

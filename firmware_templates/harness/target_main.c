/* On-target check and profile (MCU ports): runs the embedded test inputs and prints,
 * per sample, every stage output (hex), the decision and the ticks of each stage,
 * then the stack high-water mark. eedge parses these lines. */
#include <stdint.h>
#include <string.h>

#include "eedge/platform.h"
#include "model.h"

extern const int32_t eedge_test_input_count;
extern const int8_t eedge_test_inputs[][EEDGE_INPUT_BYTES];
extern uint32_t eedge_stack_high_water(void);

static char line[2 * 4096 + 64];

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
    for (n = 0; n < eedge_test_input_count; ++n) {
        eedge_result result;
        memcpy(eedge_input(), eedge_test_inputs[n], EEDGE_INPUT_BYTES);
        for (s = 0; s < EEDGE_NUM_STAGES; ++s) {
            eedge_run_stage(s);
            for (i = 0; i < eedge_stage_output_count(s); ++i) {
                const int8_t *out = eedge_stage_output(s, i, &bytes);
                char *p = put_text(line, "O ");
                p = put_int(p, n);
                p = put_text(p, " ");
                p = put_int(p, s);
                p = put_text(p, " ");
                p = put_int(p, i);
                p = put_text(p, " ");
                if (bytes > 4096) {
                    bytes = 4096;
                }
                p = put_hex(p, out, bytes);
                p = put_text(p, "\n");
                *p = 0;
                eedge_platform_print(line);
            }
        }
        memcpy(eedge_input(), eedge_test_inputs[n], EEDGE_INPUT_BYTES);
        eedge_infer(&result);
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
    {
        char *p = put_text(line, "STACK ");
        p = put_int(p, (int32_t)eedge_stack_high_water());
        p = put_text(p, "\nEND\n");
        *p = 0;
        eedge_platform_print(line);
    }
    return 0;
}

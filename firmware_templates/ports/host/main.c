/* Host harness: reads int8 samples from stdin and writes, per sample, every stage's
 * outputs (all stages run) followed by the cascade's decision (early exits on):
 *   stage outputs bytes..., int32 exit, int32 class, int32 score, int32 stages_run,
 *   int32 rejected, int32 monitor_flag
 * (little-endian). eedge's tests compare these bytes with the reference executor.
 * Exit status: 0 after whole samples, 2 when stdin ends inside a sample, 1 on I/O errors. */
#include <stdio.h>
#include <string.h>

#include "eedge/platform.h"
#include "model.h"

static void write_i32(int32_t v) {
    unsigned char b[4];
    b[0] = (unsigned char)(v & 0xFF);
    b[1] = (unsigned char)((v >> 8) & 0xFF);
    b[2] = (unsigned char)((v >> 16) & 0xFF);
    b[3] = (unsigned char)((v >> 24) & 0xFF);
    fwrite(b, 1, 4, stdout);
}

int main(void) {
    static int8_t sample[EEDGE_INPUT_BYTES];
    size_t got;
    eedge_platform_init();
    while ((got = fread(sample, 1, EEDGE_INPUT_BYTES, stdin)) == EEDGE_INPUT_BYTES) {
        eedge_result result;
        int32_t s, i, bytes;
        memcpy(eedge_input(), sample, EEDGE_INPUT_BYTES);
        for (s = 0; s < EEDGE_NUM_STAGES; ++s) {
            eedge_run_stage(s);
            for (i = 0; i < eedge_stage_output_count(s); ++i) {
                const int8_t *out = eedge_stage_output(s, i, &bytes);
                fwrite(out, 1, (size_t)bytes, stdout);
            }
        }
        memcpy(eedge_input(), sample, EEDGE_INPUT_BYTES);
        eedge_infer(&result);
        write_i32(result.exit_index);
        write_i32(result.class_index);
        write_i32(result.confidence);
        write_i32(result.stages_run);
        write_i32(result.rejected);
        write_i32(result.monitor_flag);
    }
    if (ferror(stdin)) {
        fputs("eedge: reading the samples from stdin failed\n", stderr);
        return 1;
    }
    if (got != 0) { /* a cut-off last sample is an error, not a sample padded with junk */
        fprintf(stderr, "eedge: stdin ends inside a sample (%lu of %d bytes); send whole "
                        "samples\n", (unsigned long)got, EEDGE_INPUT_BYTES);
        return 2;
    }
    return fflush(stdout) == 0 ? 0 : 1;
}

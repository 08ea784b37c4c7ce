/* What an inference returns, and the exit decision shared by all models. */
#ifndef EEDGE_RUNTIME_H
#define EEDGE_RUNTIME_H

#include <stdint.h>

#include "eedge/kernels.h"

#define EEDGE_MAX_STAGES 16 /* eedge codegen refuses models with more */

#define EEDGE_CRITERION_MAX_SOFTMAX 0
#define EEDGE_CRITERION_MARGIN 1
#define EEDGE_CRITERION_ENTROPY 2
#define EEDGE_CRITERION_GATE 3 /* a learned gate: the int8 logit after the class logits */

typedef struct {
    int32_t class_index;                     /* argmax of the deciding exit's logits */
    int32_t exit_index;                      /* which exit decided */
    int32_t confidence;                      /* the exit's integer score (see eedge_exit_score_s8) */
    int32_t rejected;                        /* 1: left early as too uncertain (window policy) */
    int32_t monitor_flag;                    /* 1: the accuracy-drop monitor fired (ensembles) */
    int32_t stages_run;
    uint32_t stage_ticks[EEDGE_MAX_STAGES];  /* platform ticks spent in each stage */
} eedge_result;

/* Integer confidence of one exit, larger = more sure, from TFLite's int8 softmax of its
 * logits (q encodes probability (q + 128) / 256):
 *   max_softmax: max q;  margin: top1 q - top2 q;  entropy: -sum entropy_lut[q + 128].
 * exp_table/exp_count: the exit's exponentials per distance to the largest logit, as
 * eedge_softmax_lut_s8 reads them (generated with the model).
 * entropy_lut (256 entries, generated with the model) is only read for entropy. */
int32_t eedge_exit_score_s8(const eedge_softmax_params *p, const int32_t *exp_table,
                            int32_t exp_count, const int8_t *logits, int32_t criterion,
                            const uint16_t *entropy_lut);

/* Index of the largest logit (the first one on ties, like numpy's argmax). */
int32_t eedge_argmax_s8(const int8_t *logits, int32_t count);

#endif /* EEDGE_RUNTIME_H */

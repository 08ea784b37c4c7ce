/* What an inference returns, and the exit decision shared by all models. */
#ifndef EEDGE_RUNTIME_H
#define EEDGE_RUNTIME_H

#include <stdint.h>

#include "eedge/kernels.h"

#define EEDGE_MAX_STAGES 16
#define EEDGE_MAX_CLASSES 256

typedef struct {
    int32_t class_index;                     /* argmax of the deciding exit's logits */
    int32_t exit_index;                      /* which exit decided */
    int32_t confidence;                      /* int8 max-softmax (probability = (c + 128) / 256) */
    int32_t stages_run;
    uint32_t stage_ticks[EEDGE_MAX_STAGES];  /* platform ticks spent in each stage */
} eedge_result;

/* int8 softmax of one exit's logits (TFLite arithmetic), then its maximum. */
int32_t eedge_exit_confidence_s8(const eedge_softmax_params *p, const int8_t *logits);

/* Index of the largest logit (the first one on ties, like numpy's argmax). */
int32_t eedge_argmax_s8(const int8_t *logits, int32_t count);

#endif /* EEDGE_RUNTIME_H */

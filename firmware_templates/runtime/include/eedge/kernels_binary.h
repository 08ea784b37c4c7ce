/* int8 binary elementwise kernels with broadcasting: ADD, SUB, MUL, MAXIMUM, MINIMUM,
 * SQUARED_DIFFERENCE.
 *
 * The code generator collapses the broadcast into at most EEDGE_BINARY_MAX_RANK loop
 * levels (innermost last) and gives each level its extent and the element step of
 * each operand (0 where that operand is broadcast), so same-shape operands are one
 * flat loop and a per-channel operand (squeeze-excite) is pixels x channels.
 */
#ifndef EEDGE_KERNELS_BINARY_H
#define EEDGE_KERNELS_BINARY_H

#include <stdint.h>

#define EEDGE_BINARY_MAX_RANK 6
#define EEDGE_BINARY_ADD 0
#define EEDGE_BINARY_SUB 1
#define EEDGE_BINARY_MUL 2
#define EEDGE_BINARY_MAXIMUM 3
#define EEDGE_BINARY_MINIMUM 4
#define EEDGE_BINARY_SQUARED_DIFFERENCE 5
/* Words of scratch an ADD/SUB/SQUARED_DIFFERENCE with a lookup table needs (scaled value of
 * each int8 input). */
#define EEDGE_BINARY_LUT_WORDS 512

typedef struct {
    int32_t op;                           /* EEDGE_BINARY_* */
    int32_t in1_offset, in2_offset;       /* -input zero points */
    int32_t out_offset;                   /* +output zero point */
    int32_t m1, r1, m2, r2;               /* ADD/SUB/SQUARED_DIFFERENCE: input multipliers, right
                                           * shifts */
    int32_t m_out, l_out, r_out;          /* output multiplier, left and right shift */
    int32_t act_min, act_max;
    int32_t rank;                         /* loop levels used, >= 1 */
    int32_t dims[EEDGE_BINARY_MAX_RANK];
    int32_t a_step[EEDGE_BINARY_MAX_RANK];
    int32_t b_step[EEDGE_BINARY_MAX_RANK];
    int32_t *lut;                         /* ADD/SUB/SQUARED_DIFFERENCE: EEDGE_BINARY_LUT_WORDS
                                           * of scratch, or 0 */
} eedge_binary_bcast_params;

void eedge_binary_s8(const eedge_binary_bcast_params *p, const int8_t *a, const int8_t *b,
                     int8_t *out);

#endif /* EEDGE_KERNELS_BINARY_H */

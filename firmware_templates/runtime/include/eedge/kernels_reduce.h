/* int8 kernels of the reduce family (declared by the eedge.ops.* modules that emit calls). */
#ifndef EEDGE_KERNELS_REDUCE_H
#define EEDGE_KERNELS_REDUCE_H

#include <stdint.h>

#endif /* EEDGE_KERNELS_REDUCE_H */

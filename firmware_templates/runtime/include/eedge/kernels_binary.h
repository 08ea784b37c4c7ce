/* int8 kernels of the binary family (declared by the eedge.ops.* modules that emit calls). */
#ifndef EEDGE_KERNELS_BINARY_H
#define EEDGE_KERNELS_BINARY_H

#include <stdint.h>

#endif /* EEDGE_KERNELS_BINARY_H */

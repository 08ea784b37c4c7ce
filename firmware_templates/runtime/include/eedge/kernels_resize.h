/* int8 kernels of the resize family (declared by the eedge.ops.* modules that emit calls). */
#ifndef EEDGE_KERNELS_RESIZE_H
#define EEDGE_KERNELS_RESIZE_H

#include <stdint.h>

#endif /* EEDGE_KERNELS_RESIZE_H */

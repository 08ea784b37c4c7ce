/* int8 kernels of the movement family (declared by the eedge.ops.* modules that emit calls). */
#ifndef EEDGE_KERNELS_MOVEMENT_H
#define EEDGE_KERNELS_MOVEMENT_H

#include <stdint.h>

#endif /* EEDGE_KERNELS_MOVEMENT_H */

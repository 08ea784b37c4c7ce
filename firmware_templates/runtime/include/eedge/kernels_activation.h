/* int8 kernels of the activation family (declared by the eedge.ops.* modules that emit calls). */
#ifndef EEDGE_KERNELS_ACTIVATION_H
#define EEDGE_KERNELS_ACTIVATION_H

#include <stdint.h>

#endif /* EEDGE_KERNELS_ACTIVATION_H */

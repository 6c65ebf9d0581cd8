/* The splat, load and store every CPU kernel's float vector type needs, defined once for any width:
 * VECTOR_BASICS(vf) defines vsplat, vload and vstore for the GCC vector type vf (through memcpy, so no alignment
 * is assumed). The includer defines ALWAYS_INLINE and includes <string.h>. */
#ifndef MAMBALITESR_VECTOR_BASICS_H
#define MAMBALITESR_VECTOR_BASICS_H

/* A vector of s in every lane: zero + s is one broadcast (x - x + s would cost two ops: NaN rules keep x - x). */
#define VECTOR_BASICS(vf)                                                                                  \
    ALWAYS_INLINE vf vsplat(float s) {                                                                     \
        const vf zero = {0};                                                                               \
        return zero + s;                                                                                   \
    }                                                                                                      \
    ALWAYS_INLINE vf vload(const float *p) {                                                               \
        vf v;                                                                                              \
        memcpy(&v, p, sizeof v);                                                                           \
        return v;                                                                                          \
    }                                                                                                      \
    ALWAYS_INLINE void vstore(float *p, vf v) { memcpy(p, &v, sizeof v); }

#endif

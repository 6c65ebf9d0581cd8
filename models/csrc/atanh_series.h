/* The series both CPU kernels' softplus sums: log1p(e) = 2 atanh(s) with s = e / (2 + e) <= 1/3, and
 * atanh(s) / s = 1 + s^2/3 + s^4/5 + ... + s^12/13 (truncation < 1e-8 relative), in Horner form on s2 = s^2.
 * A macro, so one definition serves every float vector type (8 lanes in the scan, 4/8/16 in the mixer). */
#ifndef MAMBALITESR_ATANH_SERIES_H
#define MAMBALITESR_ATANH_SERIES_H

#define ATANH_SERIES(s2)                                                                                   \
    (((((((s2) * (1.0f / 13.0f) + 1.0f / 11.0f) * (s2) + 1.0f / 9.0f) * (s2) + 1.0f / 7.0f) * (s2) +  \
       1.0f / 5.0f) * (s2) + 1.0f / 3.0f) * (s2) + 1.0f)

#endif

/*
 * Host-only entry points of the selective scan's C interface (see selective_scan_kernel.h): they read
 * sizes and pointers but never touch the device, so the CPU emulation library shares them.
 */
#include "selective_scan_core.cuh"

extern "C" {

MAMBALITESR_API void mambalitesr_selective_scan_set_dense_strides(SelectiveScanParams* p)
{
    if (p)
        mambalitesr::scan::set_dense_strides(p);
}

MAMBALITESR_API const char* mambalitesr_selective_scan_validate(const SelectiveScanParams* p)
{
    return mambalitesr::scan::validate(p);
}

MAMBALITESR_API size_t mambalitesr_selective_scan_workspace_size(const SelectiveScanParams* p)
{
    return p ? mambalitesr::scan::workspace_layout(*p).total : 0;
}

MAMBALITESR_API size_t mambalitesr_selective_scan_params_size(void)
{
    return sizeof(SelectiveScanParams);
}

} // extern "C"

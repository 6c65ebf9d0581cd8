/* ONNX Runtime custom-op library of the mambalitesr domain: SelectiveScan (ort_selective_scan.c) and MambaMixer
 * (ort_mamba_mixer.c) as native CPU kernels, registered by RegisterCustomOps.
 *
 * Why native: the Python kernel (onnxruntime-extensions) crosses into the interpreter for every node. Here ONNX
 * Runtime calls C directly.
 *
 * Built against ONNX Runtime's C API header only (onnxruntime_c_api.h, fetched from a package registry at
 * build time: runtime/csrc/ort_headers.py); the library never links libonnxruntime: the running ONNX Runtime
 * hands its API table to RegisterCustomOps. We ask for API version MLSR_ORT_API (1.16), so any ONNX Runtime
 * from 1.16 on (JetPack 6's wheels included) loads it.
 *
 * Threads: the session config entry "mambalitesr.scan_threads" (set by ort_ops.session_options from the
 * backend's --threads) caps the kernels' OpenMP threads; absent or 0, the OpenMP default.
 */
#include <stdlib.h>

#include "ort_common.h"

#define MLSR_ORT_ABI_VERSION 2 /* 2: the MambaMixer op */
#define THREADS_KEY "mambalitesr.scan_threads"

int mambalitesr_ort_abi_version(void) { return MLSR_ORT_ABI_VERSION; }

static int64_t threads_from(const OrtApi *api, const OrtSessionOptions *options) {
    char value[32];
    size_t size = sizeof value;
    int has = 0;
    OrtStatus *status = api->HasSessionConfigEntry(options, THREADS_KEY, &has);
    if (status != NULL || !has) {
        if (status) api->ReleaseStatus(status);
        return 0;
    }
    status = api->GetSessionConfigEntry(options, THREADS_KEY, value, &size);
    if (status != NULL) {
        api->ReleaseStatus(status);
        return 0;
    }
    return strtoll(value, NULL, 10);
}

/* Called by ONNX Runtime (SessionOptions.register_custom_ops_library): one op struct per op and registration,
 * kept for the process's life as ONNX Runtime requires (sessions may outlive the options). */
OrtStatus *ORT_API_CALL RegisterCustomOps(OrtSessionOptions *options, const OrtApiBase *api_base) {
    const OrtApi *api = api_base->GetApi(MLSR_ORT_API);
    if (api == NULL) return NULL; /* older than 1.16: nothing we can call, not even CreateStatus */
    const int64_t nthreads = threads_from(api, options);
    OrtCustomOp *ops[2] = {mlsr_selective_scan_op(nthreads), mlsr_mamba_mixer_op(nthreads)};
    if (ops[0] == NULL || ops[1] == NULL) return api->CreateStatus(ORT_FAIL, "mambalitesr: out of memory");
    OrtCustomOpDomain *domain = NULL;
    TRY(api->CreateCustomOpDomain("mambalitesr", &domain));
    for (int i = 0; i < 2; ++i) TRY(api->CustomOpDomain_Add(domain, ops[i]));
    return api->AddCustomOpDomain(options, domain);
}

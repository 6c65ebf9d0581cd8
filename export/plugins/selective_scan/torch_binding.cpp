/*
 * Test-only PyTorch binding of the CUDA selective scan, built by benchmarks/gpu_check.py with
 * torch.utils.cpp_extension.load. The kernel itself includes no torch header: this file fills the plain
 * SelectiveScanParams and calls mambalitesr_selective_scan_fwd on PyTorch's current stream.
 *
 * Glossary and shapes as selective_scan_kernel.h, with the tokens flattened (the Python API's layout):
 *   u (B, D, L)  delta (B, K*D, L)  A (K*D, N)  Bm, Cm (B, K, N, L)  Dskip, delta_bias (K*D,)  z (B, D, L)
 *   -> y (B, D, L) in u's dtype, L = height * width.
 */
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#include <torch/extension.h>

#include "selective_scan_kernel.h"

namespace
{

MambaLiteSRDType scan_type(const torch::Tensor& t, const char* name)
{
    TORCH_CHECK(t.scalar_type() == torch::kFloat32 || t.scalar_type() == torch::kFloat16, name,
        " must be float32 or float16, got ", t.scalar_type());
    return t.scalar_type() == torch::kFloat16 ? MAMBALITESR_FLOAT16 : MAMBALITESR_FLOAT32;
}

torch::Tensor ready(const torch::Tensor& t, const torch::Tensor& like, const char* name)
{
    TORCH_CHECK(t.is_cuda() && t.device() == like.device(), name, " must be on ", like.device());
    return t.contiguous();
}

torch::Tensor selective_scan_fwd(const torch::Tensor& u_in, const torch::Tensor& delta_in, const torch::Tensor& A_in,
    const torch::Tensor& B_in, const torch::Tensor& C_in, const c10::optional<torch::Tensor>& D_in,
    const c10::optional<torch::Tensor>& z_in, const c10::optional<torch::Tensor>& bias_in, bool delta_softplus,
    int64_t directions, int64_t height, int64_t width, int64_t chunk_len)
{
    TORCH_CHECK(u_in.is_cuda() && u_in.dim() == 3, "u must be a CUDA tensor (B, D, L)");
    const c10::cuda::CUDAGuard guard(u_in.device());
    const auto u = u_in.contiguous();
    const auto delta = ready(delta_in, u, "delta");
    const auto A = ready(A_in, u, "A");
    const auto Bm = ready(B_in, u, "Bm");
    const auto Cm = ready(C_in, u, "Cm");
    TORCH_CHECK(height * width == u.size(2), "height * width must equal L");
    TORCH_CHECK(delta.scalar_type() == u.scalar_type() && Bm.scalar_type() == u.scalar_type()
            && Cm.scalar_type() == u.scalar_type(),
        "u, delta, Bm and Cm must share one dtype");
    const int64_t K = directions, D = u.size(1), N = A.size(-1), L = u.size(2), batch = u.size(0);
    TORCH_CHECK(delta.sizes() == torch::IntArrayRef({batch, K * D, L}), "delta must be (B, K*D, L)");
    TORCH_CHECK(A.dim() == 2 && A.size(0) == K * D, "A must be (K*D, N)");
    TORCH_CHECK(Bm.sizes() == torch::IntArrayRef({batch, K, N, L}), "Bm must be (B, K, N, L)");
    TORCH_CHECK(Cm.sizes() == torch::IntArrayRef({batch, K, N, L}), "Cm must be (B, K, N, L)");

    SelectiveScanParams p{};
    p.batch = batch;
    p.channels = D;
    p.height = height;
    p.width = width;
    p.directions = (int32_t) K;
    p.d_state = (int32_t) N;
    p.delta_softplus = delta_softplus ? 1 : 0;
    p.chunk_len = (int32_t) chunk_len;
    p.act_dtype = scan_type(u, "u");
    p.A_dtype = scan_type(A, "A");
    p.Dskip_dtype = p.delta_bias_dtype = MAMBALITESR_FLOAT32;

    torch::Tensor Dskip, z, bias;
    if (D_in && D_in->defined())
    {
        Dskip = ready(*D_in, u, "Dskip");
        TORCH_CHECK(Dskip.numel() == K * D, "Dskip must be (K*D,)");
        p.Dskip_dtype = scan_type(Dskip, "Dskip");
        p.Dskip = Dskip.data_ptr();
    }
    if (z_in && z_in->defined())
    {
        z = ready(*z_in, u, "z");
        TORCH_CHECK(z.sizes() == u.sizes() && z.scalar_type() == u.scalar_type(), "z must match u");
        p.z = z.data_ptr();
    }
    if (bias_in && bias_in->defined())
    {
        bias = ready(*bias_in, u, "delta_bias");
        TORCH_CHECK(bias.numel() == K * D, "delta_bias must be (K*D,)");
        p.delta_bias_dtype = scan_type(bias, "delta_bias");
        p.delta_bias = bias.data_ptr();
    }
    auto y = torch::empty_like(u);
    p.u = u.data_ptr();
    p.delta = delta.data_ptr();
    p.A = A.data_ptr();
    p.Bm = Bm.data_ptr();
    p.Cm = Cm.data_ptr();
    p.y = y.data_ptr();
    mambalitesr_selective_scan_set_dense_strides(&p);
    const size_t bytes = mambalitesr_selective_scan_workspace_size(&p);
    torch::Tensor workspace;
    if (bytes)
    {
        workspace = torch::empty({(int64_t) bytes}, u.options().dtype(torch::kUInt8));
        p.workspace = workspace.data_ptr();
        p.workspace_bytes = bytes;
    }
    const char* invalid = mambalitesr_selective_scan_validate(&p);
    TORCH_CHECK(invalid == nullptr, "selective scan: ", invalid ? invalid : "");
    const int status = mambalitesr_selective_scan_fwd(&p, c10::cuda::getCurrentCUDAStream().stream());
    TORCH_CHECK(status == 0, "selective scan launch failed: ", cudaGetErrorString((cudaError_t) status));
    return y;
}

} // namespace

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m)
{
    m.def("selective_scan_fwd", &selective_scan_fwd, "MambaLiteSR CUDA selective scan (forward)", py::arg("u"),
        py::arg("delta"), py::arg("A"), py::arg("Bm"), py::arg("Cm"), py::arg("Dskip") = py::none(),
        py::arg("z") = py::none(), py::arg("delta_bias") = py::none(), py::arg("delta_softplus") = false,
        py::arg("directions") = 1, py::arg("height") = 0, py::arg("width") = 0, py::arg("chunk_len") = 0);
}

/*
 * TensorRT 10 IPluginV3 for the ONNX node mambalitesr::SelectiveScan (plugin "SelectiveScan", version "1",
 * namespace ""), running the CUDA selective scan of selective_scan_kernel.h.
 *
 * Glossary (plugin I/O -> paper symbol): u -> x_t, delta -> Delta_t (raw), A -> A, Bm -> B_t, Cm -> C_t,
 * Dskip -> D, z -> gate, delta_bias -> Delta bias, y -> y_t; B batch, D channels, K directions, N d_state.
 *
 * Inputs (in this order)                 Attributes (int32 plugin fields)
 *   0 u          (B, D, H, W)              directions      1 or 4
 *   1 delta      (B, K*D, H, W)            d_state         N, 1..64, must equal A's last dim
 *   2 A          (K*D, N)                  delta_softplus  0 or 1 (default 0)
 *   3 Bm         (B, K, N, H, W)
 *   4 Cm         (B, K, N, H, W)         Output
 *   5 Dskip      (K*D,)                    0 y           (B, D, H, W), the type of u
 *   6 z          (B, D, H, W)
 *   7 delta_bias (K*D,)
 *
 * Formats: linear layout only. The activations u, delta, Bm, Cm, z and y share one type, fp32 or fp16;
 * the parameters A, Dskip and delta_bias are each fp32 or fp16 on their own (fp32 is the usual choice
 * because ONNX initializers stay fp32 in a mixed-precision build). The state is always fp32.
 */
#ifndef MAMBALITESR_SELECTIVE_SCAN_PLUGIN_H
#define MAMBALITESR_SELECTIVE_SCAN_PLUGIN_H

#include <string>
#include <vector>

#include <NvInferRuntime.h>

#include "selective_scan_kernel.h"

// Version of this plugin library (recorded in engine sidecars); the TensorRT plugin version is "1".
#define MAMBALITESR_PLUGIN_VERSION "1.0.0"

namespace mambalitesr
{
namespace plugin
{

constexpr char const* kPluginName = "SelectiveScan";
constexpr char const* kPluginVersion = "1";
constexpr char const* kPluginNamespace = "";

enum InputIndex : int32_t
{
    kU = 0,
    kDelta = 1,
    kA = 2,
    kBm = 3,
    kCm = 4,
    kDskip = 5,
    kZ = 6,
    kDeltaBias = 7,
    kNbInputs = 8
};

struct ScanAttributes
{
    int32_t directions{1};
    int32_t d_state{0};
    int32_t delta_softplus{0};
};

// NULL when valid, else a sentence naming the bad attribute.
char const* validateAttributes(ScanAttributes const& attrs) noexcept;

class SelectiveScanPlugin : public nvinfer1::IPluginV3,
                            public nvinfer1::IPluginV3OneCore,
                            public nvinfer1::IPluginV3OneBuild,
                            public nvinfer1::IPluginV3OneRuntime
{
public:
    explicit SelectiveScanPlugin(ScanAttributes const& attrs);
    SelectiveScanPlugin(SelectiveScanPlugin const&) = delete;
    SelectiveScanPlugin& operator=(SelectiveScanPlugin const&) = delete;
    ~SelectiveScanPlugin() override = default;

    // IPluginV3
    nvinfer1::IPluginCapability* getCapabilityInterface(nvinfer1::PluginCapabilityType type) noexcept override;
    nvinfer1::IPluginV3* clone() noexcept override;

    // IPluginV3OneCore
    char const* getPluginName() const noexcept override;
    char const* getPluginVersion() const noexcept override;
    char const* getPluginNamespace() const noexcept override;

    // IPluginV3OneBuild
    int32_t configurePlugin(nvinfer1::DynamicPluginTensorDesc const* in, int32_t nbInputs,
        nvinfer1::DynamicPluginTensorDesc const* out, int32_t nbOutputs) noexcept override;
    int32_t getOutputDataTypes(nvinfer1::DataType* outputTypes, int32_t nbOutputs,
        nvinfer1::DataType const* inputTypes, int32_t nbInputs) const noexcept override;
    int32_t getOutputShapes(nvinfer1::DimsExprs const* inputs, int32_t nbInputs, nvinfer1::DimsExprs const* shapeInputs,
        int32_t nbShapeInputs, nvinfer1::DimsExprs* outputs, int32_t nbOutputs,
        nvinfer1::IExprBuilder& exprBuilder) noexcept override;
    bool supportsFormatCombination(int32_t pos, nvinfer1::DynamicPluginTensorDesc const* inOut, int32_t nbInputs,
        int32_t nbOutputs) noexcept override;
    int32_t getNbOutputs() const noexcept override;
    size_t getWorkspaceSize(nvinfer1::DynamicPluginTensorDesc const* inputs, int32_t nbInputs,
        nvinfer1::DynamicPluginTensorDesc const* outputs, int32_t nbOutputs) const noexcept override;
    char const* getTimingCacheID() noexcept override;
    char const* getMetadataString() noexcept override;

    // IPluginV3OneRuntime
    int32_t onShapeChange(nvinfer1::PluginTensorDesc const* in, int32_t nbInputs, nvinfer1::PluginTensorDesc const* out,
        int32_t nbOutputs) noexcept override;
    int32_t enqueue(nvinfer1::PluginTensorDesc const* inputDesc, nvinfer1::PluginTensorDesc const* outputDesc,
        void const* const* inputs, void* const* outputs, void* workspace, cudaStream_t stream) noexcept override;
    nvinfer1::IPluginV3* attachToContext(nvinfer1::IPluginResourceContext* context) noexcept override;
    nvinfer1::PluginFieldCollection const* getFieldsToSerialize() noexcept override;

private:
    ScanAttributes mAttrs;
    std::string mDescription; // "directions=4;d_state=16;delta_softplus=1": timing-cache ID and metadata
    std::vector<nvinfer1::PluginField> mSerialFields;
    nvinfer1::PluginFieldCollection mSerialCollection{};
};

class SelectiveScanPluginCreator : public nvinfer1::IPluginCreatorV3One
{
public:
    SelectiveScanPluginCreator();
    ~SelectiveScanPluginCreator() override = default;

    nvinfer1::IPluginV3* createPlugin(
        char const* name, nvinfer1::PluginFieldCollection const* fc, nvinfer1::TensorRTPhase phase) noexcept override;
    nvinfer1::PluginFieldCollection const* getFieldNames() noexcept override;
    char const* getPluginName() const noexcept override;
    char const* getPluginVersion() const noexcept override;
    char const* getPluginNamespace() const noexcept override;

private:
    std::vector<nvinfer1::PluginField> mFields;
    nvinfer1::PluginFieldCollection mCollection{};
};

//! The library's one creator (function-local static: constructed on first use, also from the load-time
//! registrar of the _autoreg variant, whatever the order of static initialisation).
SelectiveScanPluginCreator& theCreator();

} // namespace plugin
} // namespace mambalitesr

// Entry points of the plugin library. TensorRT 10's IPluginRegistry::loadLibrary (Python:
// trt.get_plugin_registry().load_library, trtexec --dynamicPlugins) reads getCreators, the IPluginV3 entry
// point. getPluginCreators, the IPluginV2 loader's name, is deliberately not exported: a V2 loader would
// treat our IPluginCreatorV3One list as IPluginCreator (V2) objects. Loading libmambalitesr_plugins.so
// registers nothing by itself, so loadLibrary never meets an already-registered creator. The variant
// libmambalitesr_plugins_autoreg.so (MAMBALITESR_PLUGIN_REGISTER_AT_LOAD) registers at load for hosts that
// only dlopen (Triton's TensorRT backend, DeepStream) and so reports no creators through getCreators.
extern "C" {
MAMBALITESR_API void setLoggerFinder(nvinfer1::ILoggerFinder* finder);
MAMBALITESR_API nvinfer1::IPluginCreatorInterface* const* getCreators(int32_t& nbCreators);
MAMBALITESR_API char const* mambalitesr_plugin_version(void);
}

#endif // MAMBALITESR_SELECTIVE_SCAN_PLUGIN_H

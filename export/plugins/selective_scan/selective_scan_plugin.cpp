/*
 * TensorRT 10 IPluginV3 "SelectiveScan" v1: shape/type negotiation, serialisation and the enqueue that
 * calls mambalitesr_selective_scan_fwd. Semantics, I/O and formats: selective_scan_plugin.h and README.md.
 *
 * Glossary: B batch, D channels, K directions, N d_state, H x W grid, L = H * W tokens.
 */
#include "selective_scan_plugin.h"

#include <cstdio>
#include <exception>
#include <mutex>
#include <sstream>

#include <cuda_runtime_api.h>

using namespace nvinfer1;

namespace mambalitesr
{
namespace plugin
{
namespace
{

// ---------------------------------------------------------------------------------------------------
// Logging through TensorRT's logger when the library was loaded by IPluginRegistry::loadLibrary,
// else to stderr (the library was dlopen'ed some other way).

std::mutex gLoggerMutex;
ILoggerFinder* gLoggerFinder{nullptr};

void log(ILogger::Severity severity, std::string const& message) noexcept
{
    std::string const line = std::string("[mambalitesr SelectiveScan] ") + message;
    ILogger* logger{nullptr};
    {
        std::lock_guard<std::mutex> lock(gLoggerMutex);
        if (gLoggerFinder)
            logger = gLoggerFinder->findLogger();
    }
    if (logger)
        logger->log(severity, line.c_str());
    else
        std::fprintf(stderr, "%s\n", line.c_str());
}

void logError(std::string const& message) noexcept
{
    log(ILogger::Severity::kERROR, message);
}

// ---------------------------------------------------------------------------------------------------
// Shape contract. `wildcards` accepts -1 (a dimension not known until runtime) in the build phase.

std::string dimsToString(Dims const& d)
{
    std::ostringstream s;
    s << "(";
    for (int32_t i = 0; i < d.nbDims; ++i)
        s << (i ? ", " : "") << d.d[i];
    s << ")";
    return s.str();
}

bool sameDim(int64_t a, int64_t b, bool wildcards)
{
    return a == b || (wildcards && (a < 0 || b < 0));
}

int64_t times(int64_t factor, int64_t dim)
{
    return dim < 0 ? -1 : factor * dim;
}

// Empty when the eight input shapes fit the contract, else a sentence naming the first misfit.
std::string checkShapes(Dims const* const dims[kNbInputs], ScanAttributes const& attrs, bool wildcards)
{
    static char const* const kNames[kNbInputs] = {"u", "delta", "A", "Bm", "Cm", "Dskip", "z", "delta_bias"};
    static int32_t const kRanks[kNbInputs] = {4, 4, 2, 5, 5, 1, 4, 1};
    for (int32_t i = 0; i < kNbInputs; ++i)
    {
        if (dims[i]->nbDims != kRanks[i])
            return std::string(kNames[i]) + " must have rank " + std::to_string(kRanks[i]) + ", got "
                + dimsToString(*dims[i]);
    }
    Dims const& u = *dims[kU];
    int64_t const B = u.d[0], D = u.d[1], H = u.d[2], W = u.d[3];
    int64_t const K = attrs.directions, N = attrs.d_state, KD = times(K, D);
    auto expect = [&](int32_t input, std::vector<int64_t> const& want) -> std::string {
        Dims const& got = *dims[input];
        for (int32_t j = 0; j < got.nbDims; ++j)
        {
            if (!sameDim(got.d[j], want[j], wildcards))
            {
                std::ostringstream s;
                s << kNames[input] << " must be (";
                for (size_t k = 0; k < want.size(); ++k)
                    s << (k ? ", " : "") << want[k];
                s << ") for u " << dimsToString(u) << ", directions=" << K << ", d_state=" << N << "; got "
                  << dimsToString(got);
                return s.str();
            }
        }
        return {};
    };
    std::string err;
    if (!(err = expect(kDelta, {B, KD, H, W})).empty() || !(err = expect(kA, {KD, N})).empty()
        || !(err = expect(kBm, {B, K, N, H, W})).empty() || !(err = expect(kCm, {B, K, N, H, W})).empty()
        || !(err = expect(kDskip, {KD})).empty() || !(err = expect(kZ, {B, D, H, W})).empty()
        || !(err = expect(kDeltaBias, {KD})).empty())
        return err;
    return {};
}

bool isParameter(int32_t pos)
{
    return pos == kA || pos == kDskip || pos == kDeltaBias;
}

MambaLiteSRDType toScanType(DataType t)
{
    return t == DataType::kHALF ? MAMBALITESR_FLOAT16 : MAMBALITESR_FLOAT32;
}

SelectiveScanParams sizesToParams(ScanAttributes const& attrs, Dims const& u)
{
    SelectiveScanParams p{};
    p.batch = u.d[0];
    p.channels = u.d[1];
    p.height = u.d[2];
    p.width = u.d[3];
    p.directions = attrs.directions;
    p.d_state = attrs.d_state;
    p.delta_softplus = attrs.delta_softplus;
    p.chunk_len = 0; // the single pass: its workspace (the K = 4 direction sum) grows monotonically with the shape
    return p;
}

bool readInt(PluginField const& field, int32_t& out)
{
    if (!field.data || field.length < 1)
        return false;
    switch (field.type)
    {
    case PluginFieldType::kINT32: out = *static_cast<int32_t const*>(field.data); return true;
    case PluginFieldType::kINT64: out = static_cast<int32_t>(*static_cast<int64_t const*>(field.data)); return true;
    case PluginFieldType::kINT16: out = *static_cast<int16_t const*>(field.data); return true;
    case PluginFieldType::kINT8: out = *static_cast<int8_t const*>(field.data); return true;
    default: return false;
    }
}

} // namespace

char const* validateAttributes(ScanAttributes const& attrs) noexcept
{
    if (attrs.directions != 1 && attrs.directions != 4)
        return "attribute directions must be 1 or 4";
    if (attrs.d_state < 1 || attrs.d_state > MAMBALITESR_SCAN_MAX_STATE)
        return "attribute d_state must be in 1..64";
    if (attrs.delta_softplus != 0 && attrs.delta_softplus != 1)
        return "attribute delta_softplus must be 0 or 1";
    return nullptr;
}

// ---------------------------------------------------------------------------------------------------
// SelectiveScanPlugin

SelectiveScanPlugin::SelectiveScanPlugin(ScanAttributes const& attrs)
    : mAttrs(attrs)
{
    std::ostringstream s;
    s << "directions=" << attrs.directions << ";d_state=" << attrs.d_state
      << ";delta_softplus=" << attrs.delta_softplus;
    mDescription = s.str();
}

IPluginCapability* SelectiveScanPlugin::getCapabilityInterface(PluginCapabilityType type) noexcept
{
    switch (type)
    {
    case PluginCapabilityType::kCORE: return static_cast<IPluginV3OneCore*>(this);
    case PluginCapabilityType::kBUILD: return static_cast<IPluginV3OneBuild*>(this);
    case PluginCapabilityType::kRUNTIME: return static_cast<IPluginV3OneRuntime*>(this);
    }
    return nullptr;
}

IPluginV3* SelectiveScanPlugin::clone() noexcept
{
    try
    {
        return new SelectiveScanPlugin(mAttrs);
    }
    catch (std::exception const& e)
    {
        logError(std::string("clone failed: ") + e.what());
        return nullptr;
    }
}

char const* SelectiveScanPlugin::getPluginName() const noexcept
{
    return kPluginName;
}

char const* SelectiveScanPlugin::getPluginVersion() const noexcept
{
    return kPluginVersion;
}

char const* SelectiveScanPlugin::getPluginNamespace() const noexcept
{
    return kPluginNamespace;
}

int32_t SelectiveScanPlugin::configurePlugin(
    DynamicPluginTensorDesc const* in, int32_t nbInputs, DynamicPluginTensorDesc const* out, int32_t nbOutputs) noexcept
{
    try
    {
        if (nbInputs != kNbInputs || nbOutputs != 1)
        {
            logError("expects 8 inputs (u, delta, A, Bm, Cm, Dskip, z, delta_bias) and 1 output, got "
                + std::to_string(nbInputs) + " and " + std::to_string(nbOutputs));
            return -1;
        }
        Dims const* dims[kNbInputs];
        for (int32_t i = 0; i < kNbInputs; ++i)
            dims[i] = &in[i].desc.dims;
        std::string const err = checkShapes(dims, mAttrs, /*wildcards=*/true);
        if (!err.empty())
        {
            logError(err);
            return -1;
        }
        (void) out;
        return 0;
    }
    catch (std::exception const& e)
    {
        logError(std::string("configurePlugin failed: ") + e.what());
        return -1;
    }
}

int32_t SelectiveScanPlugin::getOutputDataTypes(
    DataType* outputTypes, int32_t nbOutputs, DataType const* inputTypes, int32_t nbInputs) const noexcept
{
    if (nbOutputs != 1 || nbInputs != kNbInputs)
        return -1;
    outputTypes[0] = inputTypes[kU];
    return 0;
}

int32_t SelectiveScanPlugin::getOutputShapes(DimsExprs const* inputs, int32_t nbInputs, DimsExprs const* shapeInputs,
    int32_t nbShapeInputs, DimsExprs* outputs, int32_t nbOutputs, IExprBuilder& exprBuilder) noexcept
{
    (void) shapeInputs;
    (void) nbShapeInputs;
    (void) exprBuilder;
    if (nbInputs != kNbInputs || nbOutputs != 1 || inputs[kU].nbDims != 4)
    {
        logError("getOutputShapes: expects 8 inputs with u of rank 4 and 1 output");
        return -1;
    }
    outputs[0] = inputs[kU]; // y has u's shape (B, D, H, W)
    return 0;
}

bool SelectiveScanPlugin::supportsFormatCombination(
    int32_t pos, DynamicPluginTensorDesc const* inOut, int32_t nbInputs, int32_t nbOutputs) noexcept
{
    if (nbInputs != kNbInputs || nbOutputs != 1 || pos < 0 || pos > kNbInputs)
        return false;
    PluginTensorDesc const& desc = inOut[pos].desc;
    if (desc.format != TensorFormat::kLINEAR)
        return false;
    if (desc.type != DataType::kFLOAT && desc.type != DataType::kHALF)
        return false;
    if (isParameter(pos) || pos == kU)
        return true;
    // TensorRT asks in increasing pos, so u's type (pos 0) is already chosen.
    return desc.type == inOut[kU].desc.type;
}

int32_t SelectiveScanPlugin::getNbOutputs() const noexcept
{
    return 1;
}

size_t SelectiveScanPlugin::getWorkspaceSize(DynamicPluginTensorDesc const* inputs, int32_t nbInputs,
    DynamicPluginTensorDesc const* outputs, int32_t nbOutputs) const noexcept
{
    (void) outputs;
    (void) nbOutputs;
    if (nbInputs != kNbInputs || inputs[kU].max.nbDims != 4)
        return 0;
    // The workspace grows monotonically with every size, so the profile's max shape covers all others.
    SelectiveScanParams const p = sizesToParams(mAttrs, inputs[kU].max);
    return mambalitesr_selective_scan_workspace_size(&p);
}

char const* SelectiveScanPlugin::getTimingCacheID() noexcept
{
    return mDescription.c_str();
}

char const* SelectiveScanPlugin::getMetadataString() noexcept
{
    return mDescription.c_str();
}

int32_t SelectiveScanPlugin::onShapeChange(
    PluginTensorDesc const* in, int32_t nbInputs, PluginTensorDesc const* out, int32_t nbOutputs) noexcept
{
    try
    {
        if (nbInputs != kNbInputs || nbOutputs != 1)
            return -1;
        Dims const* dims[kNbInputs];
        for (int32_t i = 0; i < kNbInputs; ++i)
            dims[i] = &in[i].dims;
        std::string const err = checkShapes(dims, mAttrs, /*wildcards=*/false);
        if (!err.empty())
        {
            logError(err);
            return -1;
        }
        (void) out;
        return 0;
    }
    catch (std::exception const& e)
    {
        logError(std::string("onShapeChange failed: ") + e.what());
        return -1;
    }
}

int32_t SelectiveScanPlugin::enqueue(PluginTensorDesc const* inputDesc, PluginTensorDesc const* outputDesc,
    void const* const* inputs, void* const* outputs, void* workspace, cudaStream_t stream) noexcept
{
    SelectiveScanParams p = sizesToParams(mAttrs, inputDesc[kU].dims);
    p.act_dtype = toScanType(inputDesc[kU].type);
    p.A_dtype = toScanType(inputDesc[kA].type);
    p.Dskip_dtype = toScanType(inputDesc[kDskip].type);
    p.delta_bias_dtype = toScanType(inputDesc[kDeltaBias].type);
    p.u = inputs[kU];
    p.delta = inputs[kDelta];
    p.A = inputs[kA];
    p.Bm = inputs[kBm];
    p.Cm = inputs[kCm];
    p.Dskip = inputs[kDskip];
    p.z = inputs[kZ];
    p.delta_bias = inputs[kDeltaBias];
    p.y = outputs[0];
    mambalitesr_selective_scan_set_dense_strides(&p);
    p.workspace = workspace;
    // TensorRT allocated getWorkspaceSize(max shape) bytes, which covers this (no larger) shape.
    p.workspace_bytes = mambalitesr_selective_scan_workspace_size(&p);
    (void) outputDesc;
    if (char const* invalid = mambalitesr_selective_scan_validate(&p))
    {
        logError(std::string("enqueue: ") + invalid);
        return -1;
    }
    int const status = mambalitesr_selective_scan_fwd(&p, stream);
    if (status != 0)
    {
        logError(std::string("enqueue: kernel launch failed: ")
            + cudaGetErrorString(static_cast<cudaError_t>(status)));
    }
    return status;
}

IPluginV3* SelectiveScanPlugin::attachToContext(IPluginResourceContext* context) noexcept
{
    (void) context; // no per-context resources: TensorRT provides the workspace
    return clone();
}

PluginFieldCollection const* SelectiveScanPlugin::getFieldsToSerialize() noexcept
{
    try
    {
        mSerialFields.clear();
        mSerialFields.emplace_back("directions", &mAttrs.directions, PluginFieldType::kINT32, 1);
        mSerialFields.emplace_back("d_state", &mAttrs.d_state, PluginFieldType::kINT32, 1);
        mSerialFields.emplace_back("delta_softplus", &mAttrs.delta_softplus, PluginFieldType::kINT32, 1);
        mSerialCollection.nbFields = static_cast<int32_t>(mSerialFields.size());
        mSerialCollection.fields = mSerialFields.data();
        return &mSerialCollection;
    }
    catch (std::exception const& e)
    {
        logError(std::string("getFieldsToSerialize failed: ") + e.what());
        return nullptr;
    }
}

// ---------------------------------------------------------------------------------------------------
// SelectiveScanPluginCreator

SelectiveScanPluginCreator::SelectiveScanPluginCreator()
{
    mFields.emplace_back("directions", nullptr, PluginFieldType::kINT32, 1);
    mFields.emplace_back("d_state", nullptr, PluginFieldType::kINT32, 1);
    mFields.emplace_back("delta_softplus", nullptr, PluginFieldType::kINT32, 1);
    mCollection.nbFields = static_cast<int32_t>(mFields.size());
    mCollection.fields = mFields.data();
}

IPluginV3* SelectiveScanPluginCreator::createPlugin(
    char const* name, PluginFieldCollection const* fc, TensorRTPhase phase) noexcept
{
    (void) phase; // the same three fields are used to build and to deserialise
    try
    {
        ScanAttributes attrs;
        bool haveDirections = false, haveState = false;
        for (int32_t i = 0; fc && i < fc->nbFields; ++i)
        {
            PluginField const& field = fc->fields[i];
            std::string const key = field.name ? field.name : "";
            int32_t* target = key == "directions" ? &attrs.directions
                : key == "d_state"                ? &attrs.d_state
                : key == "delta_softplus"         ? &attrs.delta_softplus
                                                  : nullptr;
            if (!target)
                continue; // e.g. plugin_version / plugin_namespace from the ONNX node
            if (!readInt(field, *target))
            {
                logError("node " + std::string(name ? name : "?") + ": attribute " + key + " must be an integer");
                return nullptr;
            }
            haveDirections |= key == "directions";
            haveState |= key == "d_state";
        }
        if (!haveDirections || !haveState)
        {
            logError("node " + std::string(name ? name : "?")
                + ": attributes directions and d_state are required (delta_softplus defaults to 0)");
            return nullptr;
        }
        if (char const* invalid = validateAttributes(attrs))
        {
            logError("node " + std::string(name ? name : "?") + ": " + invalid);
            return nullptr;
        }
        return new SelectiveScanPlugin(attrs);
    }
    catch (std::exception const& e)
    {
        logError(std::string("createPlugin failed: ") + e.what());
        return nullptr;
    }
}

PluginFieldCollection const* SelectiveScanPluginCreator::getFieldNames() noexcept
{
    return &mCollection;
}

char const* SelectiveScanPluginCreator::getPluginName() const noexcept
{
    return kPluginName;
}

char const* SelectiveScanPluginCreator::getPluginVersion() const noexcept
{
    return kPluginVersion;
}

char const* SelectiveScanPluginCreator::getPluginNamespace() const noexcept
{
    return kPluginNamespace;
}

} // namespace plugin
} // namespace mambalitesr

namespace mambalitesr
{
namespace plugin
{
SelectiveScanPluginCreator& theCreator()
{
    static SelectiveScanPluginCreator creator;
    return creator;
}
} // namespace plugin
} // namespace mambalitesr

#if defined(MAMBALITESR_PLUGIN_REGISTER_AT_LOAD)
// libmambalitesr_plugins_autoreg.so: hosts that only dlopen a plugin library and never call getCreators
// (Triton's TensorRT backend `--backend-config=tensorrt,plugins=`, DeepStream's `custom-lib-path`, LD_PRELOAD)
// find the creator because loading this variant registers it with the process's TensorRT registry. This
// variant links libnvinfer for getPluginRegistry(); the plain library links only cudart.
namespace
{
struct RegisterAtLoad
{
    RegisterAtLoad()
    {
        nvinfer1::IPluginRegistry* registry = getPluginRegistry();
        if (registry != nullptr)
            registry->registerCreator(mambalitesr::plugin::theCreator(), mambalitesr::plugin::kPluginNamespace);
    }
};
RegisterAtLoad const registerAtLoad{};
} // namespace
#endif

extern "C" {

MAMBALITESR_API void setLoggerFinder(nvinfer1::ILoggerFinder* finder)
{
    std::lock_guard<std::mutex> lock(mambalitesr::plugin::gLoggerMutex);
    if (!mambalitesr::plugin::gLoggerFinder && finder)
        mambalitesr::plugin::gLoggerFinder = finder;
}

MAMBALITESR_API nvinfer1::IPluginCreatorInterface* const* getCreators(int32_t& nbCreators)
{
    static nvinfer1::IPluginCreatorInterface* const creators[] = {&mambalitesr::plugin::theCreator()};
#if defined(MAMBALITESR_PLUGIN_REGISTER_AT_LOAD)
    nbCreators = 0; // already in the registry since the library was loaded (below); twice would be an error
#else
    nbCreators = 1;
#endif
    return creators;
}

MAMBALITESR_API char const* mambalitesr_plugin_version(void)
{
    return MAMBALITESR_PLUGIN_VERSION;
}

} // extern "C"

/*
 * CPU self-test of the SelectiveScan plugin's TensorRT-facing logic, without libnvinfer or a GPU: the
 * creator and its fields, attribute validation, serialisation round trip, type/format negotiation, shape
 * checks and the workspace size. Built and run by tests/test_cuda_sources.py when TENSORRT_INCLUDE_DIR
 * points at TensorRT 10 headers; enqueue (the kernel) is exercised by benchmarks/gpu_check.sh on a GPU.
 *
 * Glossary: B batch, D channels, K directions, N d_state, H x W grid. Exit status = number of failures.
 */
#include <cstdio>
#include <cstring>
#include <memory>
#include <string>
#include <vector>

#include "selective_scan_plugin.h"

using namespace nvinfer1;
using mambalitesr::plugin::SelectiveScanPluginCreator;

namespace
{

int gFailures = 0;

void expect(bool ok, char const* what)
{
    std::printf("%s %s\n", ok ? "ok  " : "FAIL", what);
    gFailures += ok ? 0 : 1;
}

Dims dims(std::vector<int64_t> const& d)
{
    Dims out{};
    out.nbDims = static_cast<int32_t>(d.size());
    for (size_t i = 0; i < d.size(); ++i)
        out.d[i] = d[i];
    return out;
}

struct Fields
{
    std::vector<PluginField> list;
    PluginFieldCollection fc{};

    void add(char const* name, void const* data, PluginFieldType type)
    {
        list.emplace_back(name, data, type, 1);
        fc.nbFields = static_cast<int32_t>(list.size());
        fc.fields = list.data();
    }
};

// The eight input shapes of the contract plus y, for B, D, K, N, H, W.
std::vector<Dims> contractShapes(int64_t B, int64_t D, int64_t K, int64_t N, int64_t H, int64_t W)
{
    return {dims({B, D, H, W}), dims({B, K * D, H, W}), dims({K * D, N}), dims({B, K, N, H, W}),
        dims({B, K, N, H, W}), dims({K * D}), dims({B, D, H, W}), dims({K * D}), dims({B, D, H, W})};
}

std::vector<DynamicPluginTensorDesc> dynamicDescs(std::vector<Dims> const& shapes, DataType act, DataType param)
{
    std::vector<DynamicPluginTensorDesc> descs(shapes.size());
    for (size_t i = 0; i < shapes.size(); ++i)
    {
        bool const isParam = i == 2 || i == 5 || i == 7;
        descs[i].desc.dims = shapes[i];
        descs[i].desc.type = isParam ? param : act;
        descs[i].desc.format = TensorFormat::kLINEAR;
        descs[i].desc.scale = -1.f;
        descs[i].min = descs[i].opt = descs[i].max = shapes[i];
    }
    return descs;
}

} // namespace

int main()
{
    int32_t n = 0;
    IPluginCreatorInterface* const* creators = getCreators(n);
    expect(n == 1 && creators && creators[0], "getCreators returns one creator");
    expect(std::string(creators[0]->getInterfaceInfo().kind) == "PLUGIN CREATOR_V3ONE", "creator is IPluginCreatorV3One");
    auto* creator = static_cast<IPluginCreatorV3One*>(creators[0]);
    expect(std::string(creator->getPluginName()) == "SelectiveScan" && std::string(creator->getPluginVersion()) == "1"
            && std::string(creator->getPluginNamespace()).empty(),
        "creator name SelectiveScan, version 1, namespace empty");
    PluginFieldCollection const* names = creator->getFieldNames();
    expect(names && names->nbFields == 3 && std::string(names->fields[0].name) == "directions"
            && std::string(names->fields[1].name) == "d_state" && std::string(names->fields[2].name) == "delta_softplus"
            && names->fields[0].type == PluginFieldType::kINT32,
        "creator fields directions, d_state, delta_softplus (int32)");
    expect(std::string(mambalitesr_plugin_version()) == MAMBALITESR_PLUGIN_VERSION, "library version string");

    // Creation and attribute validation.
    int32_t const four = 4, sixteen = 16, one = 1, zero = 0, three = 3;
    int64_t const sixteen64 = 16;
    Fields good;
    good.add("directions", &four, PluginFieldType::kINT32);
    good.add("d_state", &sixteen, PluginFieldType::kINT32);
    good.add("delta_softplus", &one, PluginFieldType::kINT32);
    good.add("plugin_version", "1", PluginFieldType::kCHAR); // extra ONNX attributes are ignored
    std::unique_ptr<IPluginV3> plugin(creator->createPlugin("scan0", &good.fc, TensorRTPhase::kBUILD));
    expect(plugin != nullptr, "createPlugin with valid fields");
    if (!plugin)
        return gFailures;
    Fields wide;
    wide.add("directions", &one, PluginFieldType::kINT32);
    wide.add("d_state", &sixteen64, PluginFieldType::kINT64);
    std::unique_ptr<IPluginV3> widePlugin(creator->createPlugin("scan1", &wide.fc, TensorRTPhase::kBUILD));
    expect(widePlugin != nullptr, "int64 fields accepted, delta_softplus defaults");
    Fields badK, badN, missing;
    badK.add("directions", &three, PluginFieldType::kINT32);
    badK.add("d_state", &sixteen, PluginFieldType::kINT32);
    badN.add("directions", &four, PluginFieldType::kINT32);
    badN.add("d_state", &zero, PluginFieldType::kINT32);
    missing.add("d_state", &sixteen, PluginFieldType::kINT32);
    std::printf("(three error lines from the plugin's log are expected next)\n");
    expect(creator->createPlugin("bad", &badK.fc, TensorRTPhase::kBUILD) == nullptr, "directions=3 refused");
    expect(creator->createPlugin("bad", &badN.fc, TensorRTPhase::kBUILD) == nullptr, "d_state=0 refused");
    expect(creator->createPlugin("bad", &missing.fc, TensorRTPhase::kBUILD) == nullptr, "missing directions refused");

    auto* core = static_cast<IPluginV3OneCore*>(plugin->getCapabilityInterface(PluginCapabilityType::kCORE));
    auto* build = static_cast<IPluginV3OneBuild*>(plugin->getCapabilityInterface(PluginCapabilityType::kBUILD));
    auto* runtime = static_cast<IPluginV3OneRuntime*>(plugin->getCapabilityInterface(PluginCapabilityType::kRUNTIME));
    expect(core && build && runtime, "core, build and runtime capabilities");
    expect(std::string(core->getPluginName()) == "SelectiveScan" && std::string(core->getPluginVersion()) == "1",
        "plugin name and version");
    std::string const meta = build->getMetadataString();
    expect(meta == "directions=4;d_state=16;delta_softplus=1", "metadata string");

    // Serialisation round trip through the creator (runtime phase).
    PluginFieldCollection const* serial = runtime->getFieldsToSerialize();
    expect(serial && serial->nbFields == 3, "three serialized fields");
    std::unique_ptr<IPluginV3> revived(creator->createPlugin("scan0", serial, TensorRTPhase::kRUNTIME));
    expect(revived
            && std::string(static_cast<IPluginV3OneBuild*>(revived->getCapabilityInterface(PluginCapabilityType::kBUILD))
                               ->getMetadataString())
                == meta,
        "deserialized plugin has the same attributes");
    std::unique_ptr<IPluginV3> cloned(plugin->clone());
    std::unique_ptr<IPluginV3> attached(runtime->attachToContext(nullptr));
    expect(cloned && attached && cloned.get() != plugin.get(), "clone and attachToContext give new objects");

    // Types.
    expect(build->getNbOutputs() == 1, "one output");
    DataType in[8] = {DataType::kHALF, DataType::kHALF, DataType::kFLOAT, DataType::kHALF, DataType::kHALF,
        DataType::kFLOAT, DataType::kHALF, DataType::kFLOAT};
    DataType out{DataType::kFLOAT};
    expect(build->getOutputDataTypes(&out, 1, in, 8) == 0 && out == DataType::kHALF, "y takes u's type");

    // Formats.
    int64_t const B = 2, D = 8, K = 4, N = 16, H = 6, W = 5;
    auto descs = dynamicDescs(contractShapes(B, D, K, N, H, W), DataType::kHALF, DataType::kFLOAT);
    bool allOk = true;
    for (int32_t pos = 0; pos < 9; ++pos)
        allOk = allOk && build->supportsFormatCombination(pos, descs.data(), 8, 1);
    expect(allOk, "fp16 activations with fp32 parameters supported");
    descs[1].desc.type = DataType::kFLOAT;
    expect(!build->supportsFormatCombination(1, descs.data(), 8, 1), "delta's type must match u's");
    descs[1].desc.type = DataType::kHALF;
    descs[8].desc.type = DataType::kFLOAT;
    expect(!build->supportsFormatCombination(8, descs.data(), 8, 1), "y's type must match u's");
    descs[8].desc.type = DataType::kHALF;
    descs[2].desc.type = DataType::kHALF;
    expect(build->supportsFormatCombination(2, descs.data(), 8, 1), "A may be fp16");
    descs[2].desc.type = DataType::kINT32;
    expect(!build->supportsFormatCombination(2, descs.data(), 8, 1), "int32 refused");
    descs[2].desc.type = DataType::kFLOAT;
    descs[0].desc.format = TensorFormat::kCHW32;
    expect(!build->supportsFormatCombination(0, descs.data(), 8, 1), "only linear format");
    descs[0].desc.format = TensorFormat::kLINEAR;

    // Shapes: configure (build time, -1 allowed) and onShapeChange (runtime, exact).
    auto wild = descs;
    for (int i : {0, 1, 6, 8})
        wild[i].desc.dims.d[0] = wild[i].desc.dims.d[2] = wild[i].desc.dims.d[3] = -1;
    for (int i : {3, 4})
        wild[i].desc.dims.d[0] = wild[i].desc.dims.d[3] = wild[i].desc.dims.d[4] = -1;
    expect(build->configurePlugin(wild.data(), 8, &wild[8], 1) == 0, "configurePlugin accepts dynamic B, H, W");
    std::printf("(error lines from the plugin's log are expected next)\n");
    auto badA = wild;
    badA[2].desc.dims = dims({K * D, N + 1});
    expect(build->configurePlugin(badA.data(), 8, &badA[8], 1) != 0, "configurePlugin refuses A with N != d_state");
    expect(build->configurePlugin(wild.data(), 7, &wild[8], 1) != 0, "configurePlugin refuses 7 inputs");
    std::vector<PluginTensorDesc> exact(9);
    for (int i = 0; i < 9; ++i)
        exact[i] = descs[i].desc;
    expect(runtime->onShapeChange(exact.data(), 8, &exact[8], 1) == 0, "onShapeChange accepts the contract");
    exact[6].dims.d[3] = W + 1;
    expect(runtime->onShapeChange(exact.data(), 8, &exact[8], 1) != 0, "onShapeChange refuses z of another size");
    exact[6].dims.d[3] = W;
    exact[3].dims.d[1] = 1;
    expect(runtime->onShapeChange(exact.data(), 8, &exact[8], 1) != 0, "onShapeChange refuses Bm with K=1 for K=4");

    // Workspace: sized from the profile's max shape.
    auto big = descs;
    big[0].max = dims({4, D, 64, 48});
    SelectiveScanParams p{};
    p.batch = 4;
    p.channels = D;
    p.height = 64;
    p.width = 48;
    p.directions = (int32_t) K;
    p.d_state = (int32_t) N;
    size_t const want = mambalitesr_selective_scan_workspace_size(&p);
    expect(want > 0 && build->getWorkspaceSize(big.data(), 8, &big[8], 1) == want, "workspace from the max shape");

    std::printf("%s: %d failure(s)\n", gFailures ? "FAILED" : "passed", gFailures);
    return gFailures;
}

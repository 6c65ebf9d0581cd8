"""Export of trained MambaLiteSR networks for deployment: ONNX graphs (the selective scan as standard
operators or as one ``mambalitesr::SelectiveScan`` node per mixer), TensorRT engines built on the target
device with the fused CUDA selective-scan plugin (``export/plugins/selective_scan``), and the checks that
keep an engine, its plugin library, the TensorRT version and the GPU it was built for together.
"""

"""Run a TensorRT engine once on CUDA torch tensors: for the GPU check and tests on a machine with torch.

Glossary (code name -> meaning):
    feeds    input tensor name -> CUDA torch tensor; the outputs come back as name -> CUDA torch tensor

The camera runtime has its own double-buffered, torch-free path (runtime/backends/tensorrt_backend.py).
"""
from __future__ import annotations

from mambalitesr.errors import UserError
from mambalitesr.trt_runtime import import_tensorrt


def torch_dtype(trt, trt_type):
    """torch dtype of a TensorRT DataType."""
    import torch

    table = {trt.DataType.FLOAT: torch.float32, trt.DataType.HALF: torch.float16, trt.DataType.INT32: torch.int32,
             trt.DataType.INT8: torch.int8, trt.DataType.BOOL: torch.bool}
    for name, dtype in (("INT64", torch.int64), ("BF16", torch.bfloat16), ("UINT8", torch.uint8)):
        if hasattr(trt.DataType, name):
            table[getattr(trt.DataType, name)] = dtype
    if trt_type not in table:
        raise UserError(f"TensorRT tensor type {trt_type} has no torch equivalent here")
    return table[trt_type]


def infer_torch(engine, feeds: dict) -> dict:
    """Run ``engine`` once on CUDA torch tensors ``feeds`` (input name -> tensor); returns name -> output tensor.

    For checks and tests on a GPU machine with torch; the camera runtime has its own double-buffered path.
    """
    import torch

    trt = import_tensorrt()
    context = engine.create_execution_context()
    if context is None:
        raise UserError("TensorRT could not create an execution context (out of GPU memory?)")
    keep, outputs = [], {}
    names = [engine.get_tensor_name(i) for i in range(engine.num_io_tensors)]
    inputs = [n for n in names if engine.get_tensor_mode(n) == trt.TensorIOMode.INPUT]
    missing = sorted(set(inputs) - set(feeds))
    if missing:
        raise UserError(f"engine inputs not fed: {missing}")
    for name in inputs:
        t = feeds[name].to(device="cuda", dtype=torch_dtype(trt, engine.get_tensor_dtype(name))).contiguous()
        keep.append(t)
        if not context.set_input_shape(name, tuple(t.shape)):
            raise UserError(f"input {name}: shape {tuple(t.shape)} is outside the engine's optimisation profile")
        context.set_tensor_address(name, t.data_ptr())
    for name in names:
        if name in inputs:
            continue
        shape = tuple(context.get_tensor_shape(name))
        out = torch.empty(shape, dtype=torch_dtype(trt, engine.get_tensor_dtype(name)), device="cuda")
        context.set_tensor_address(name, out.data_ptr())
        outputs[name] = out
    stream = torch.cuda.current_stream()
    if not context.execute_async_v3(stream.cuda_stream):
        raise UserError("TensorRT execute_async_v3 failed (see the TensorRT log above)")
    stream.synchronize()
    return outputs

"""The live runtime: camera frames in, super-resolved frames out, with latency and watts measured.

It holds what runs around the exported model on the device: the C frame path
(camera formats to the model's planar input and back, tile split and feathered
merge for frames larger than the engine's fixed shape), power telemetry
(tegrastats, jtop, NVML) and the engine runners. Nothing here imports torch at
top level, so the runtime stays light on a Jetson.
"""

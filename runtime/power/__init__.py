"""Power telemetry: board power samples from jtop, tegrastats or NVML, and energy per interval.

Glossary (code name -> meaning):
    PowerSample   one reading: t_monotonic (s, time.monotonic), total_mw (board input, mW,
                  None when the source has no total rail), rails {NAME: (cur_mw, avg_mw)}, source
    total rail    VDD_IN (Orin, Xavier NX), POM_5V_IN (Nano/TX2, JetPack 4), VIN_SYS_5V0 or VIN
                  (AGX) -- the first of these a line has; NVML: GPU 0's board power
    P(t)          total_mw as a function of time, linear between samples
    E             energy in J over [t0, t1]: trapezoid rule over the samples, the ends
                  interpolated; avg W = E / covered time; J/frame = E / frames
    source        "jtop" | "tegrastats" | "nvml"; `--power auto` tries them in that order

Modules: sample (the sample type and the source interface), tegrastats, jtop_reader,
nvml_reader (the sources; polling: the read loop jtop and NVML share), energy (integration),
monitor (background collection and interval reports), choose (`--power` choice and its messages; not "select", which would
shadow the standard module for anyone running from this folder).
"""
from mambalitesr.runtime.power.energy import IntervalReport, integrate
from mambalitesr.runtime.power.monitor import PowerMonitor
from mambalitesr.runtime.power.sample import PowerSample, PowerSource
from mambalitesr.runtime.power.choose import POWER_CHOICES, add_power_arguments, open_power_source

__all__ = [
    "IntervalReport", "POWER_CHOICES", "PowerMonitor", "PowerSample", "PowerSource",
    "add_power_arguments", "integrate", "open_power_source",
]

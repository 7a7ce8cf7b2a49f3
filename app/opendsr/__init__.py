"""OpenDSR 2.0 (https://github.com/opengdpr/OpenDSR): the processor side, on top of the
native erasure requests."""

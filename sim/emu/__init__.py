"""The emulation engine: a trace slice replayed over real TCP and UDP in Mininet hosts, in real time."""

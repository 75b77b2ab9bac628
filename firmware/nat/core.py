# The per-packet primitives, parse() and translate(), chosen once for this runtime: the
# viper core where MicroPython has native emitters (the unix port, the ESP32), else the
# pure-Python core (CPython, the 32-bit WASI build). Both take the same arguments and
# give the same results; `python` is always the pure core, for tests that compare them.
from . import _python as python

try:
    from . import _viper as fast
    NAME = "viper"
except Exception:  # a viper decorator fails to compile without native emitters
    fast = python
    NAME = "python"

parse = fast.parse
translate = fast.translate

# The per-packet primitives, chosen once for this runtime: the viper core where
# MicroPython has native emitters (the unix port, the ESP32), else the pure-Python core
# (CPython, the 32-bit WASI build). Both take the same arguments and give the same
# results; `python` is always the pure core, for tests that compare them.
#
#   parse(buf, n, f)                      OK or MALFORMED; f: the fields (consts.py F_*)
#   translate_flow(buf, f, mems, heads)   a TCP, UDP or ICMP query packet, by its flow in
#                                         the tables (indexed by kind)
#   translate_error(buf, f, mems, heads)  an ICMP error, by the flow it quotes (RFC 5508)
# The callers (Table.translate, the router's datapath) pick one by the packet's kind.
from . import _python as python
from .icmperr import translate_error  # noqa: F401 (one of the primitives, above)

try:
    from . import _viper as fast
    NAME = "viper"
except Exception:  # a viper decorator fails to compile without native emitters
    fast = python
    NAME = "python"


parse = fast.parse
translate_flow = fast.translate_flow

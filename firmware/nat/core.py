# Which fast core this runtime has: viper where MicroPython has native emitters, the
# struct-based core on CPython, else none (the WASI build): then the pure-Python twins
# (packet.parse_py, flows.translate_py) serve. NAME says which, for tests and benchmarks.
try:
    from ._viper import parse, translate
    NAME = "viper"
except Exception:  # a viper decorator fails to compile without native emitters
    try:
        from ._cpython import parse, translate
        NAME = "cpython"
    except ImportError:
        parse = translate = None
        NAME = "python"

# The router's drain loops (router.py) compiled to machine code, for MicroPython with
# native emitters (the unix port, the ESP32): router.py puts these in place of its own,
# their bytecode twins, which CPython and the 32-bit WASI build run. Same source line
# for line; host_tests runs the router's cases on both.
#
# Why: MicroPython (without pystack) puts the frame of a bytecode function with more
# than 11 words of state on the heap (py/objfun.c, VM_MAX_STATE_ON_STACK) and frees it
# on return, so every drain call was a gc_alloc and a gc_free; a native function keeps
# its locals on the C stack. About 0.3 µs of each loop iteration on the unix port.
import micropython

from compat import const

_OK = const(0)
_V_PASS = const(0)
_V_DROP = const(1)
_F_LEN = const(1)
_C_OUT = const(2)
_C_IN = const(3)


@micropython.native
def drain_lan(self, limit):
    recv, send, screen_lan, translate, buf, f, pol, c, mems, heads = self._lan_path
    for i in range(limit):
        n = recv(buf)
        if n <= 0:
            return i
        v = screen_lan(buf, n, f, pol, c)
        if v == _V_PASS:
            st = translate(buf, f, mems, heads)
            if st == _OK:
                send(buf, f[_F_LEN])
                c[_C_OUT] += 1
            else:
                self._lan_untranslated(st)
        elif v != _V_DROP:
            self._lan_for_router(v)
    return limit


@micropython.native
def drain_wan(self, limit):
    recv, send, screen_wan, translate, buf, f, pol, c, mems, heads = self._wan_path
    for i in range(limit):
        n = recv(buf)
        if n <= 0:
            return i
        v = screen_wan(buf, n, f, pol, c)
        if v == _V_PASS:
            st = translate(buf, f, mems, heads)
            if st == _OK:
                send(buf, f[_F_LEN])
                c[_C_IN] += 1
            else:
                self._wan_untranslated(st)
        elif v != _V_DROP:
            self._wan_special(v)
    return limit

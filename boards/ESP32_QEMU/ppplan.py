# The emulated board's LAN: PPP over UART2, which QEMU connects to a pty where the LAN
# host's pppd answers (tools/qemu.py). QEMU's esp32 machine has one NIC, the WAN's. pppd
# names both ends: this one gets the configured LAN address (lan.addr), the host the
# address it is told to take. network.PPP (MicroPython's ESP32 port) hands lwIP bare IPv4
# packets; natlink claims them through lwIP's IPv4 input hook
# (boards/natlink/esp32/natlink_qemu.c).
#
# network.PPP reads the UART when its RXIDLE interrupt schedules PPP.poll() on the main
# thread; under QEMU that interrupt stops coming after a few packets, and the main thread
# may be busy at the REPL anyway. So a thread of its own feeds PPP from the UART (the
# interrupt handler is removed: one reader keeps the byte stream in order). QEMU paces
# the emulated UART at its baud rate: fast, so the link is not a serial line's.
import _thread
import select
import time

import machine
import network

CONNECT_MS = 20000      # open() waits this long for the peer to agree on the link
PUMP_STACK = 8 * 1024


class PppLan:
    kind = "PPP"

    def __init__(self, uart=2, tx=17, rx=16, baudrate=3000000):
        self.uart = (uart, tx, rx, baudrate)
        self.nic = None
        self._pumping = False

    def open(self, cfg):
        if self.nic is None:
            n, tx, rx, baud = self.uart
            self._uart = machine.UART(n, baudrate=baud, tx=tx, rx=rx, rxbuf=8192, txbuf=8192)
            self.nic = network.PPP(self._uart)
        if not self.nic.isconnected():
            self.nic.connect()
            self._uart.irq(handler=None, trigger=0)  # connect() set it: the pump reads
            if not self._pumping:
                self._pumping = True
                _thread.stack_size(PUMP_STACK)
                _thread.start_new_thread(self._pump, ())
                _thread.stack_size(0)
            t0 = time.ticks_ms()
            while not self.nic.isconnected():
                if time.ticks_diff(time.ticks_ms(), t0) >= CONNECT_MS:
                    # lwIP keeps asking: the LAN comes up when a peer answers
                    print("natrouter: PPP on UART%d: no peer yet" % self.uart[0])
                    return self.nic
                time.sleep_ms(50)
        addr = self.nic.ipconfig("addr4")[0]
        if addr != cfg["lan"]["addr"]:
            print("natrouter: PPP gave the LAN end %s, the configuration says %s"
                  % (addr, cfg["lan"]["addr"]))
        return self.nic

    def _pump(self):
        # select.poll sleeps a FreeRTOS tick at a time with the GIL released (sleep_ms
        # would spin through its last tick)
        uart, nic = self._uart, self.nic
        ready = select.poll()
        ready.register(uart, select.POLLIN)
        while True:
            if ready.poll(1000) and nic.poll() < 0:
                time.sleep_ms(100)  # the link is down: connect() again brings it back

    def apply(self, cfg):
        pass                    # nothing of "wifi" concerns a PPP LAN

    def describe(self):
        return "PPP on UART%d" % self.uart[0]

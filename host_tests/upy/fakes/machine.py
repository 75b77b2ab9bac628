# A fake of MicroPython's ESP32 `machine` module for the board tests: the pins the
# boards name (ports/esp32/machine_pin.c: Pin.IN = GPIO_MODE_INPUT = 1, Pin.OUT =
# GPIO_MODE_INPUT_OUTPUT = 3), recorded in PINS, their levels from INPUTS (a test holds a
# button down there); the watchdog (ports/esp32/machine_wdt.c), whose feeds are recorded
# in WDT_LOG; reset() as the board's reboot.
import time

PINS = []       # every Pin made: (id, mode)
INPUTS = {}     # id -> the level an input reads, or a function giving it (else 1)
WDT_LOG = []    # ("start", timeout_ms, ticks) and ("feed", ticks), in order


class Pin:
    IN = 1
    OUT = 3
    OPEN_DRAIN = 7
    PULL_UP = 2
    PULL_DOWN = 1

    def __init__(self, id, mode=-1, pull=-1, value=None):
        if not isinstance(id, int) or not 0 <= id <= 39:
            raise ValueError("invalid pin")
        if 34 <= id <= 39 and (mode == self.OUT or pull not in (-1, None)):
            raise ValueError("pin can only be input")   # no output, no internal pulls
        self.id = id
        self.mode = mode
        self.pull = pull
        self._value = value or 0
        PINS.append((id, mode))

    def value(self, *args):
        if args:
            self._value = 1 if args[0] else 0
            return None
        if self.mode == self.IN:    # the boards' buttons: pulled up, low while pressed
            level = INPUTS.get(self.id, 1)
            return level() if callable(level) else level
        return self._value

    def __repr__(self):
        return "Pin(%d)" % self.id


class WDT:
    """machine.WDT(id=0, timeout=ms): the task watchdog with one user, fed from any
    thread; made again, it takes the new timeout (esp_task_wdt_reconfigure)."""

    def __init__(self, id=0, timeout=5000):
        if id != 0:
            raise ValueError
        if timeout <= 0:
            raise ValueError("WDT timeout too short")
        self.timeout = timeout
        WDT_LOG.append(("start", timeout, time.ticks_ms()))

    def feed(self):
        WDT_LOG.append(("feed", time.ticks_ms()))


def reset():
    raise SystemExit("machine.reset()")


def unique_id():
    return b"\x24\x0a\xc4\x00\x00\x01"

# A fake of MicroPython's ESP32 `machine` module for the board tests: the pins the
# boards name (ports/esp32/machine_pin.c: Pin.IN = GPIO_MODE_INPUT = 1, Pin.OUT =
# GPIO_MODE_INPUT_OUTPUT = 3), recorded in PINS.
PINS = []   # every Pin made: (id, mode)


class Pin:
    IN = 1
    OUT = 3
    OPEN_DRAIN = 7
    PULL_UP = 2
    PULL_DOWN = 1

    def __init__(self, id, mode=-1, pull=-1, value=None):
        if not isinstance(id, int) or not 0 <= id <= 39:
            raise ValueError("invalid pin")
        if 34 <= id <= 39 and mode == self.OUT:
            raise ValueError("pin can only be input")
        self.id = id
        self.mode = mode
        self._value = value or 0
        PINS.append((id, mode))

    def value(self, *args):
        if args:
            self._value = 1 if args[0] else 0
            return None
        return self._value

    def __repr__(self):
        return "Pin(%d)" % self.id


def reset():
    raise SystemExit("machine.reset()")


def unique_id():
    return b"\x24\x0a\xc4\x00\x00\x01"

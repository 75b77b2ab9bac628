# natrouter on the ESP32: back to the defaults without a serial cable. A board with a
# free button names it (esp32board.setup(button=Button(...))); held while the board
# starts, for HOLD_MS, it resets natrouter.json to the defaults (config.reset: the old
# file is kept beside it) before the configuration is read. At the REPL: nr.reset().
#
#   Olimex ESP32-POE:  BUT1 (GPIO34, pulled up on the board), held from power-up.
#   any ESP32 (DevKitC): BOOT (GPIO0). It is a strapping pin: held at power-up it starts
#       the ROM's download mode instead, so press it within WINDOW_MS after power-up.
#   WT32-ETH01: none. Its only button-like pin, GPIO0, carries the Ethernet PHY's 50 MHz
#       clock (an input while the board runs); nr.reset() over the serial port instead.
import time

import machine

from manage import config
from esp32net import say

HOLD_MS = 5000          # held this long: reset
POLL_MS = 50


class Button:
    """gpio: its pin; pressed: the level read while it is pressed; pull: "up" or "down",
    the internal pull to use (None: the board has its own resistor); window_ms: how long
    after the firmware starts it may still be pressed (0: it must be held already)."""

    def __init__(self, gpio, name, pressed=0, pull=None, window_ms=0):
        self.gpio = gpio
        self.name = name
        self.pressed = pressed
        self.pull = pull
        self.window_ms = window_ms

    def describe(self):
        return "%s (GPIO%d)" % (self.name, self.gpio)


def at_boot(button, path):
    """Reset path to the defaults when button is held (config.reset). Returns the kept
    copy's path, True when there was nothing to keep, or None: no reset."""
    if button.pull is None:
        pin = machine.Pin(button.gpio, machine.Pin.IN)
    else:
        pull = machine.Pin.PULL_UP if button.pull == "up" else machine.Pin.PULL_DOWN
        pin = machine.Pin(button.gpio, machine.Pin.IN, pull)
    t0 = time.ticks_ms()
    while pin.value() != button.pressed:
        if time.ticks_diff(time.ticks_ms(), t0) >= button.window_ms:
            return None
        time.sleep_ms(POLL_MS)
    say("%s is pressed: hold it %d s to reset %s to the defaults"
        % (button.describe(), HOLD_MS // 1000, path))
    t0 = time.ticks_ms()
    while time.ticks_diff(time.ticks_ms(), t0) < HOLD_MS:
        if pin.value() != button.pressed:
            say("%s released: nothing reset" % button.name)
            return None
        time.sleep_ms(POLL_MS)
    kept = config.reset(path)
    say("factory reset: %s holds the defaults%s" % (
        path, "; the old configuration is kept as %s" % kept if kept else ""))
    return kept or True

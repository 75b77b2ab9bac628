# What configuration validation shares (config.py, dhcp_config.py): a collector of
# problems, each one sentence naming the key, and the little checks they all make.


class Bad(Exception):
    """One problem: its message says what is wrong, naming the key."""


class Problems(list):
    """What validation found: "what is wrong; what is used instead", one each. Strict
    (config.save, the REPL's changes), the first one raises ValueError with what is
    wrong and nothing is replaced by a default."""

    def __init__(self, strict=False):
        super().__init__()
        self.strict = strict

    def add(self, wrong, instead):
        if self.strict:
            raise ValueError(wrong)
        self.append("%s; %s" % (wrong, instead))


def is_int(v):
    return type(v) is int  # not bool: True is an int in Python


def int_section(name, sec, default, limits, problems):
    """A section of integers, limits {key: (lowest, highest)}: each bad or missing key
    takes its default (a bad one says so), unknown keys are ignored and said."""
    out = dict(default)
    if not isinstance(sec, dict):
        problems.add("%s: must be an object with %s" % (name, ", ".join(default)),
                     "using defaults")
        return out
    for k in sec:
        if k not in default:
            problems.add("%s.%s: unknown key" % (name, k), "ignored")
    for k in default:
        v = sec.get(k, default[k])
        lo, hi = limits[k]
        if is_int(v) and lo <= v <= hi:
            out[k] = v
        else:
            problems.add("%s.%s: %r must be an integer %d..%d" % (name, k, v, lo, hi),
                         "using %d" % default[k])
    return out

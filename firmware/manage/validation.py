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

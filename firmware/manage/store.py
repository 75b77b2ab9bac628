# The files a board keeps (natrouter.json, the DHCP leases), written so that a power cut
# at any moment leaves the old file or the new one, whole, never half of one; and read
# back the same way, taking the whole copy a cut left under a temporary name.
#
#   value, problem = load_json(path)   # (value, None), (value, "recovered ..."), (None, why)
#   save_json(path, value)             # a temporary file, then a rename over the old one
#
# On a filesystem whose rename does not replace (FAT), the old file steps aside first
# (path.old); should the power go in between, load_json takes path.tmp, else path.old.
import json
import os


def load_json(path):
    """(value, problem): the file's JSON value and None; if the file is missing, the
    whole spare copy an interrupted save_json left, with a problem saying so; else None
    and why not. Never raises."""
    text, problem = _read(path)
    if text is None:
        for spare in (path + ".tmp", path + ".old"):
            value = _json(_read(spare)[0])
            if value is not None:
                return value, "missing; recovered %s" % spare
        return None, problem
    value = _json(text)
    if value is None:
        return None, "not valid JSON (half-written?)"
    return value, None


def save_json(path, value):
    """Write value as JSON to path atomically: a temporary file, committed, then renamed
    over the old one."""
    text = json.dumps(value)
    tmp = path + ".tmp"
    if not _exists(path) and _json(_read(tmp)[0]) is not None:
        os.rename(tmp, path)  # the copy load_json recovered: in place before tmp is rewritten
    try:
        with open(tmp, "w") as f:
            f.write(text)
            f.flush()
        try:
            os.sync()  # the board's filesystem: commit before the rename
        except (AttributeError, OSError):
            pass
        try:
            os.rename(tmp, path)
        except OSError:
            if not _exists(path):
                raise
            # A rename that does not replace: the old file steps aside first.
            old = path + ".old"
            _remove(old)
            os.rename(path, old)
            os.rename(tmp, path)
            _remove(old)
    except BaseException:
        if _exists(path):  # else the temporary file may be the only whole copy
            _remove(tmp)
        raise


def _read(path):
    """(text, None), or (None, why not)."""
    try:
        with open(path) as f:
            return f.read(), None
    except OSError as e:
        return None, "cannot read (%s)" % e
    except Exception as e:  # e.g. bytes that are not UTF-8
        return None, "unreadable (%r)" % e


def _json(text):
    if text is None:
        return None
    try:
        return json.loads(text)
    except Exception:  # ValueError
        return None


def _exists(path):
    try:
        os.stat(path)
        return True
    except OSError:
        return False


def _remove(path):
    try:
        os.remove(path)
    except OSError:
        pass

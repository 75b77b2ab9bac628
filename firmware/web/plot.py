# The traffic plot: inline SVG drawn from the router's ring of once-a-second samples
# (forward/traffic.py, manage.api.traffic()). No script, no image files: a polyline per
# series, the scale's top rounded to 1, 2 or 5 times a power of ten.
W = 600
H = 120
_PAD = 4
POINTS = 90   # points a line at most


def nice(v):
    """The smallest 1, 2 or 5 times a power of ten that is >= v (at least 1)."""
    step = 1
    while True:
        for m in (1, 2, 5):
            if m * step >= v:
                return m * step
        step *= 10


def human(v):
    """12, 3.4k, 5.6M, 7.8G."""
    for div, unit in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if v >= div:
            return "%.1f%s" % (v / div, unit)
    return "%d" % v


def svg(o, title, unit, series, seconds):
    """Writes the figure into o. series: [(label, values per second, css class)], oldest
    first; at most POINTS points a line (neighbouring seconds averaged)."""
    w = o.write
    top = nice(max([max(v) for _, v, _ in series if v] + [1]))
    step = (seconds + POINTS - 1) // POINTS or 1
    span = max((seconds - 1) // step, 1)
    w('<figure class="plot"><figcaption>%s <span class="muted">(top of the scale %s %s, the '
      'last %s)</span></figcaption><svg viewBox="0 0 %d %d" width="100%%" role="img" '
      'aria-label="%s"><line class="axis" x1="0" y1="%d" x2="%d" y2="%d"/>' % (
          title, human(top), unit, _ago(seconds), W, H + 2 * _PAD, title, H + _PAD, W, H + _PAD))
    for label, values, cls in series:
        if not values:
            continue
        w('<polyline class="%s" points="' % cls)
        skip = (seconds - len(values)) // step  # the newest sample at the right edge
        for i in range(0, len(values) - step + 1, step):
            v = 0
            for j in range(i, i + step):
                v += values[j]
            w("%d,%d " % (W * (i // step + skip) // span, _PAD + H - H * v // step // top))
        w('"><title>%s</title></polyline>' % label)
    w('</svg><p class="legend">')
    for label, values, cls in series:
        w('<span class="%s">&#9632; %s, now %s %s</span> ' % (
            cls, label, human(values[-1] if values else 0), unit))
    w("</p></figure>")


def _ago(seconds):
    return "%d s" % seconds if seconds < 120 else "%d min" % (seconds // 60)

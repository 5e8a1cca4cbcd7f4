#!/usr/bin/python3
"""Who an iCal feed says is on call: an oracle independent of crew's schedule code.

Reads a feed that crew served with Python's `icalendar` and `recurring-ical-events` (Debian's python3-icalendar
and python3-recurring-ical-events, for /usr/bin/python3; scripts/test installs them) and prints, for COUNT
seeded random whole-second instants in [FROM, TO) and, with --edges, for the second at and before every event's
start and end inside the window, who the feed says is on call then:

    2026-03-29T01:00:00Z<TAB>carol@ops<TAB>2026-03-28T12:00:00Z/2026-03-30T06:00:00Z
    2026-04-05T15:00:00Z<TAB>-<TAB>-

one line per instant, sorted: who (the SUMMARY "On call: USER (SCHEDULE)" of each event then, as
`user@schedule`, several joined by commas: a person's feed spans schedules; `-` for nobody) and the events'
START/END in UTC, in the same order.

The feed's times are read twice, and both readings must agree or the script exits 1:
- as any calendar app would, `TZID=Europe/Berlin` meaning the zone of that name in the tz database (icalendar
  4 takes it from pytz);
- with every TZID renamed to one no database knows, so that `icalendar` builds the zone from the feed's own
  VTIMEZONE (its observances, offsets and onsets) instead.
It also checks each VTIMEZONE against the system's tz database (zoneinfo) at every hour of the window and around every change of
offset, and that `recurring_ical_events.at()` agrees with the events `between()` listed for the first 100
instants.

Usage: oncall_at.py FEED.ics FROM TO [--count N] [--seed S] [--edges]   (FROM, TO: RFC 3339 in UTC)
"""

import argparse
import datetime as dt
import random
import re
import sys

import zoneinfo

import icalendar
import recurring_ical_events

UTC = dt.timezone.utc
RENAMED = "crew-oracle-own/"
SUMMARY = re.compile(r"^On call: (.+) \((.+)\)$")


def parse_utc(s):
    return dt.datetime.strptime(s.replace("Z", ""), "%Y-%m-%dT%H:%M:%S").replace(tzinfo=UTC)


def text_utc(t):
    return t.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def fail(msg):
    print("oncall_at.py: " + msg, file=sys.stderr)
    sys.exit(1)


def events(cal, start, stop):
    """(start, end, 'user@schedule') of every event between start and stop, in UTC, sorted."""
    out = []
    try:
        found = recurring_ical_events.of(cal).between(start, stop)
    except AssertionError as e:  # its checks, such as "the event must start before it ends"
        fail("recurring_ical_events cannot read the feed: %s" % e)
    for e in found:
        a, b = e["DTSTART"].dt, e["DTEND"].dt
        if not isinstance(a, dt.datetime) or a.tzinfo is None or b.tzinfo is None:
            fail("an event without a zoned time: %r" % e)
        m = SUMMARY.match(str(e["SUMMARY"]))
        if not m:
            fail("a SUMMARY that names nobody: %r" % str(e["SUMMARY"]))
        out.append((a.astimezone(UTC), b.astimezone(UTC), "%s@%s" % (m.group(1), m.group(2))))
    out.sort()
    return out


def who(evs, t):
    return sorted(w for a, b, w in evs if a <= t < b)


def spans(evs, t):
    """(who, start, end) of the events at t, by who."""
    return sorted((w, a, b) for a, b, w in evs if a <= t < b)


def check_vtimezones(cal, start, stop):
    """Each VTIMEZONE, made a tzinfo by icalendar, gives the tz database's offset across the window."""
    for tz in cal.walk("VTIMEZONE"):
        name = str(tz["TZID"])
        ours, real = tz.to_tz(), zoneinfo.ZoneInfo(name)
        probes = []
        t = start
        while t <= stop:
            probes.append(t)
            t += dt.timedelta(hours=1)
        for sub in tz.subcomponents:
            onset = sub["DTSTART"].dt - sub["TZOFFSETFROM"].td  # the change, in UTC
            onset = onset.replace(tzinfo=UTC)
            if start <= onset <= stop:
                probes += [onset + dt.timedelta(seconds=d) for d in (-1, 0, 1)]
        for p in probes:
            if p.astimezone(ours).utcoffset() != p.astimezone(real).utcoffset():
                fail("the VTIMEZONE of %s says %s at %s, the tz database %s"
                     % (name, p.astimezone(ours).utcoffset(), text_utc(p), p.astimezone(real).utcoffset()))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("feed")
    ap.add_argument("start")
    ap.add_argument("stop")
    ap.add_argument("--count", type=int, default=1000)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--edges", action="store_true")
    a = ap.parse_args()
    start, stop = parse_utc(a.start), parse_utc(a.stop)
    with open(a.feed, "rb") as f:
        text = f.read().decode("utf-8")

    cal = icalendar.Calendar.from_ical(text)
    check_vtimezones(cal, start, stop)
    zones = [str(tz["TZID"]) for tz in cal.walk("VTIMEZONE")]
    if any(z not in zoneinfo.available_timezones() for z in zones):
        fail("a TZID the tz database does not know: %s" % zones)
    own = text
    for z in zones:
        own = own.replace("TZID=%s:" % z, "TZID=%s%s:" % (RENAMED, z)).replace("TZID:%s\r\n" % z, "TZID:%s%s\r\n" % (RENAMED, z))
    own_cal = icalendar.Calendar.from_ical(own)

    evs, own_evs = events(cal, start, stop), events(own_cal, start, stop)
    if evs != own_evs:
        diff = [(x, y) for x, y in zip(evs, own_evs) if x != y][:3]
        fail("the feed reads differently through its own VTIMEZONE: %s" % diff)
    if not evs:
        fail("the feed has no event in the window")

    rng = random.Random(a.seed)
    secs = int((stop - start).total_seconds())
    instants = {start + dt.timedelta(seconds=rng.randrange(secs)) for _ in range(a.count)}
    sample = sorted(instants)[:100]
    if a.edges:
        for x, y, _ in evs:
            for t in (x, y):
                for u in (t - dt.timedelta(seconds=1), t):
                    if start <= u < stop:
                        instants.add(u)

    # recurring_ical_events' own question, "what happens at this instant", asked for some instants.
    for t in sample:
        got = sorted("%s@%s" % SUMMARY.match(str(e["SUMMARY"])).groups() for e in recurring_ical_events.of(cal).at(t))
        if got != who(evs, t):
            fail("at(%s) says %s, between() %s" % (text_utc(t), got, who(evs, t)))

    for t in sorted(instants):
        now = spans(evs, t)
        names = ",".join(w for w, _, _ in now) or "-"
        bounds = ",".join("%s/%s" % (text_utc(a), text_utc(b)) for _, a, b in now) or "-"
        print("%s\t%s\t%s" % (text_utc(t), names, bounds))


if __name__ == "__main__":
    main()

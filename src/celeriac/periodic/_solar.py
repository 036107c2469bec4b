"""When the sun rises, sets, crosses the meridian or reaches a twilight depth, without ``ephem``.

The equations are NOAA's solar calculator's (after Meeus, *Astronomical Algorithms*): from
the Julian century come the sun's declination and the equation of time; the hour angle at
which the sun's centre stands at a given altitude gives the event around that day's solar
noon. Each event is refined three times at its own instant, which brings it within a few
seconds of PyEphem's result; the whole method is good to about a minute between the polar
circles and a little worse beyond them, where the sun moves slowly near the horizon.

Altitudes of the sun's centre, as Celery's ``solar`` asks PyEphem for them (no refraction,
the upper limb for sunrise and sunset)::

    sunrise, sunset                -0.833 deg (the limb 34' below the horizon, 16' radius)
    dawn_/dusk_civil               -6 deg
    dawn_/dusk_nautical            -12 deg
    dawn_/dusk_astronomical        -18 deg
    solar_noon                     the meridian transit

An event that does not happen on a day (no sunset in polar summer) is None for that day.
"""

from __future__ import annotations

import datetime as dt
import math

__all__ = ["EVENTS", "event_on", "next_event"]

#: event -> (altitude of the sun's centre in degrees, -1 rising / 0 transit / +1 setting)
EVENTS: dict[str, tuple[float, int]] = {
    "dawn_astronomical": (-18.0, -1),
    "dawn_nautical": (-12.0, -1),
    "dawn_civil": (-6.0, -1),
    "sunrise": (-50.0 / 60.0, -1),
    "solar_noon": (0.0, 0),
    "sunset": (-50.0 / 60.0, 1),
    "dusk_civil": (-6.0, 1),
    "dusk_nautical": (-12.0, 1),
    "dusk_astronomical": (-18.0, 1),
}

_J2000 = 2451545.0
_UNIX_EPOCH_JD = 2440587.5
_REFINEMENTS = 3


def _sun(jd: float) -> tuple[float, float]:
    """The sun's declination (radians) and the equation of time (minutes) at Julian day ``jd``."""
    t = (jd - _J2000) / 36525.0
    mean_long = math.radians((280.46646 + t * (36000.76983 + t * 0.0003032)) % 360.0)
    anomaly = math.radians(357.52911 + t * (35999.05029 - 0.0001537 * t))
    eccentricity = 0.016708634 - t * (0.000042037 + 0.0000001267 * t)
    centre = (
        math.sin(anomaly) * (1.914602 - t * (0.004817 + 0.000014 * t))
        + math.sin(2 * anomaly) * (0.019993 - 0.000101 * t)
        + math.sin(3 * anomaly) * 0.000289
    )
    omega = math.radians(125.04 - 1934.136 * t)
    apparent_long = math.radians(
        math.degrees(mean_long) + centre - 0.00569 - 0.00478 * math.sin(omega)
    )
    mean_obliquity = (
        23.0 + (26.0 + (21.448 - t * (46.815 + t * (0.00059 - t * 0.001813))) / 60) / 60
    )
    obliquity = math.radians(mean_obliquity + 0.00256 * math.cos(omega))
    declination = math.asin(math.sin(obliquity) * math.sin(apparent_long))
    y = math.tan(obliquity / 2) ** 2
    equation_of_time = 4 * math.degrees(
        y * math.sin(2 * mean_long)
        - 2 * eccentricity * math.sin(anomaly)
        + 4 * eccentricity * y * math.sin(anomaly) * math.cos(2 * mean_long)
        - 0.5 * y * y * math.sin(4 * mean_long)
        - 1.25 * eccentricity * eccentricity * math.sin(2 * anomaly)
    )
    return declination, equation_of_time


def _hour_angle(latitude: float, declination: float, altitude: float) -> float | None:
    """Degrees from the meridian at which the sun's centre is at ``altitude``; None if never."""
    lat = math.radians(latitude)
    cos_angle = (math.sin(math.radians(altitude)) - math.sin(lat) * math.sin(declination)) / (
        math.cos(lat) * math.cos(declination)
    )
    if not -1.0 <= cos_angle <= 1.0:
        return None
    return math.degrees(math.acos(cos_angle))


def event_on(event: str, day: dt.date, latitude: float, longitude: float) -> dt.datetime | None:
    """The UTC time of ``event`` in the solar day around ``day``'s noon at ``longitude``.

    ``longitude`` is east-positive. None when the sun does not reach the event's altitude.
    """
    altitude, direction = EVENTS[event]
    midnight_jd = _UNIX_EPOCH_JD + (day - dt.date(1970, 1, 1)).days
    minutes = 720.0 - 4.0 * longitude  # first guess: mean solar noon, in minutes after 00:00 UTC
    refinements, retried = _REFINEMENTS, False
    while refinements:
        declination, equation_of_time = _sun(midnight_jd + minutes / 1440.0)
        noon = 720.0 - 4.0 * longitude - equation_of_time
        angle = 0.0 if direction == 0 else _hour_angle(latitude, declination, altitude)
        if angle is None:
            if retried:
                return None
            # On a day when the sun barely reaches the altitude, it does so near midnight,
            # where the declination differs from noon's: look again from there.
            retried, minutes = True, noon + direction * 720.0
            continue
        minutes = noon + direction * 4.0 * angle
        refinements -= 1
    start = dt.datetime(day.year, day.month, day.day, tzinfo=dt.UTC)
    return start + dt.timedelta(minutes=minutes)


def next_event(
    event: str, after: dt.datetime, latitude: float, longitude: float, *, max_days: int = 367
) -> dt.datetime | None:
    """The first ``event`` strictly after ``after`` (aware), in UTC; None within ``max_days``."""
    after = after.astimezone(dt.UTC)
    first = after.date() - dt.timedelta(days=1)  # that day's event may fall on today in UTC
    for offset in range(max_days + 2):
        found = event_on(event, first + dt.timedelta(days=offset), latitude, longitude)
        if found is not None and found > after:
            return found
    return None

"""Slot fillers for dates (DOB, ordinary dates and date-times) and OTHER attributes (age, job,
nationality, religion, political group)."""

from __future__ import annotations

import datetime as dt

from guardrail.synth import lexicon as lx
from guardrail.synth.engine import Builder, Ctx, chance, slot

# ------------------------------------------------------------------------------------------- dates

_MONTHS = {
    "en": ("January", "February", "March", "April", "May", "June", "July", "August", "September", "October",
           "November", "December"),
    "de": ("Januar", "Februar", "März", "April", "Mai", "Juni", "Juli", "August", "September", "Oktober",
           "November", "Dezember"),
    "fr": ("janvier", "février", "mars", "avril", "mai", "juin", "juillet", "août", "septembre", "octobre",
           "novembre", "décembre"),
    "es": ("enero", "febrero", "marzo", "abril", "mayo", "junio", "julio", "agosto", "septiembre", "octubre",
           "noviembre", "diciembre"),
    "it": ("gennaio", "febbraio", "marzo", "aprile", "maggio", "giugno", "luglio", "agosto", "settembre",
           "ottobre", "novembre", "dicembre"),
}  # fmt: skip


def _ordinal(n: int) -> str:
    suf = "th" if 10 <= n % 100 <= 20 else {1: "st", 2: "nd", 3: "rd"}.get(n % 10, "th")
    return f"{n}{suf}"


def format_date(ctx: Ctx, d: dt.date, lang: str | None = None) -> str:
    """``d`` in one of many numeric and written formats of the locale (or English)."""
    lang = lang or (ctx.locale[:2] if chance(ctx, 0.6) else "en")
    y, m, dd = d.year, d.month, d.day
    rng = ctx.rng
    if lang == "ja":
        return rng.choice((f"{y}年{m}月{dd}日", f"{y}/{m:02d}/{dd:02d}", f"{y}-{m:02d}-{dd:02d}"))
    if lang == "zh":
        return rng.choice(
            (f"{y}年{m}月{dd}日", f"{y}年{m:02d}月{dd:02d}日", f"{y}-{m:02d}-{dd:02d}", f"{y}/{m}/{dd}",
             f"{y}.{m:02d}.{dd:02d}", f"{m}月{dd}日")
        )  # fmt: skip
    if rng.random() < 0.35:
        return rng.choice(
            (f"{y}-{m:02d}-{dd:02d}", f"{dd:02d}/{m:02d}/{y}", f"{m:02d}/{dd:02d}/{y}", f"{dd}.{m}.{y}",
             f"{m}/{dd}/{y % 100:02d}", f"{dd:02d}.{m:02d}.{y}", f"{dd:02d}-{m:02d}-{y}",
             f"{y}{m:02d}{dd:02d}")
        )  # fmt: skip
    months = _MONTHS.get(lang, _MONTHS["en"])
    mon = months[m - 1]
    if lang == "en":
        short = mon[:3]
        return rng.choice(
            (f"{mon} {dd}, {y}", f"{dd} {mon} {y}", f"{short} {dd}, {y}", f"{dd} {short} {y}",
             f"{_ordinal(dd)} {mon} {y}", f"{mon} {_ordinal(dd)}, {y}", f"the {_ordinal(dd)} of {mon} {y}",
             f"{mon} {dd}", f"{_ordinal(dd)} of {mon}", f"{short}. {dd}", f"{dd}-{short}-{y}")
        )  # fmt: skip
    if lang == "de":
        return rng.choice((f"{dd}. {mon} {y}", f"{dd}. {mon}", f"{dd:02d}.{m:02d}.{y}"))
    if lang == "es":
        return rng.choice((f"{dd} de {mon} de {y}", f"{dd} de {mon}", f"{dd}/{m}/{y}"))
    return rng.choice(
        (f"{dd} {mon} {y}", f"{dd} {mon}", f"{'1er' if dd == 1 and lang == 'fr' else dd} {mon}")
    )


def _some_date(ctx: Ctx) -> dt.date:
    return dt.date(2015, 1, 1) + dt.timedelta(days=ctx.rng.randrange(4000))


def _time(ctx: Ctx) -> str:
    h, m = ctx.rng.randrange(24), ctx.rng.choice((0, 15, 30, 45, ctx.rng.randrange(60)))
    if chance(ctx, 0.5):
        return f"{h:02d}:{m:02d}"
    return f"{h % 12 or 12}:{m:02d} {ctx.rng.choice(('am', 'pm', 'AM', 'PM', 'a.m.', 'p.m.'))}"


@slot("DATE")
def _date(ctx: Ctx, b: Builder) -> None:
    s = format_date(ctx, _some_date(ctx))
    if chance(ctx, 0.15):
        if ctx.locale[:2] in ("ja", "zh") and s[-1] == "日":
            s += f" {ctx.rng.randrange(24):02d}:{ctx.rng.randrange(60):02d}"
        else:
            s += ctx.rng.choice((" at ", ", ", " ")) + _time(ctx)
    b.add(s, "DATE")


@slot("DOB")
def _dob(ctx: Ctx, b: Builder) -> None:
    d = ctx.fake.date_of_birth(minimum_age=16, maximum_age=90)
    b.add(format_date(ctx, d), "DATE")


@slot("YEAR")
def _year(ctx: Ctx, b: Builder) -> None:
    b.add(str(ctx.rng.randint(1950, 2024)), "DATE")


@slot("DATETIME")
def _datetime(ctx: Ctx, b: Builder) -> None:
    """A machine timestamp (logs, headers): ISO 8601, RFC 2822-like or epoch-free syslog style."""
    d = _some_date(ctx)
    h, m, sec = ctx.rng.randrange(24), ctx.rng.randrange(60), ctx.rng.randrange(60)
    r = ctx.rng.random()
    if r < 0.5:
        s = f"{d.isoformat()}{ctx.rng.choice(('T', ' '))}{h:02d}:{m:02d}:{sec:02d}"
        s += ctx.rng.choice(("", "", "Z", f".{ctx.rng.randrange(1000):03d}Z", "+00:00", "+02:00"))
    elif r < 0.75:
        day = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")[d.weekday()]
        s = f"{day}, {d.day} {d.strftime('%b')} {d.year} {h:02d}:{m:02d}:{sec:02d} +0000"
    else:
        s = f"{d.strftime('%b')} {d.day:2d} {h:02d}:{m:02d}:{sec:02d}".replace("  ", " ")
    b.add(s, "DATE")


@slot("CLFDATE")
def _clf_date(ctx: Ctx, b: Builder) -> None:
    """Apache/nginx access-log time: 10/Oct/2023:13:55:36 +0000."""
    d = _some_date(ctx)
    t = f"{ctx.rng.randrange(24):02d}:{ctx.rng.randrange(60):02d}:{ctx.rng.randrange(60):02d}"
    b.add(
        f"{d.day:02d}/{d.strftime('%b')}/{d.year}:{t} {ctx.rng.choice(('+0000', '+0100', '-0700'))}", "DATE"
    )


@slot("SYSLOGDATE")
def _syslog_date(ctx: Ctx, b: Builder) -> None:
    """Classic syslog time: Mar  3 10:15:01 (no year)."""
    d = _some_date(ctx)
    t = f"{ctx.rng.randrange(24):02d}:{ctx.rng.randrange(60):02d}:{ctx.rng.randrange(60):02d}"
    b.add(f"{d.strftime('%b')} {d.day:2d} {t}", "DATE")


# ------------------------------------------------------------------------------------------- OTHER


@slot("AGE")
def _age(ctx: Ctx, b: Builder) -> None:
    n = ctx.rng.randint(16, 92)
    r = ctx.rng.random()
    if r < 0.4:
        b.add(f"{n} years old", "OTHER")
    elif r < 0.6:
        b.add(f"{n}-year-old", "OTHER")
    elif r < 0.8:
        b.add(ctx.rng.choice(("aged ", "age ", "Age: ")))
        b.add(str(n), "OTHER")
    else:
        b.add(f"{n} y/o" if chance(ctx, 0.3) else str(n), "OTHER")


@slot("AGENUM")
def _age_num(ctx: Ctx, b: Builder) -> None:
    b.add(str(ctx.rng.randint(16, 92)), "OTHER")


@slot("JOB")
def _job(ctx: Ctx, b: Builder) -> None:
    s = ctx.fake.job() if chance(ctx, 0.5) else ctx.rng.choice(lx.JOBS)
    b.add(s.split(",")[0].split(" (")[0], "OTHER")


@slot("NRP")
def _nrp(ctx: Ctx, b: Builder) -> None:
    r = ctx.rng.random()
    pool = lx.NATIONALITIES if r < 0.5 else lx.RELIGIONS if r < 0.8 else lx.POLITICAL
    b.add(ctx.rng.choice(pool), "OTHER")


@slot("NATIONALITY")
def _nationality(ctx: Ctx, b: Builder) -> None:
    b.add(ctx.rng.choice(lx.NATIONALITIES), "OTHER")

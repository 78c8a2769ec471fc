"""Slot fillers for people, contact details, places, organisations, dates and OTHER attributes.

Every filler writes into the builder itself, so that what belongs outside a span (a title, a
possessive, a label word) is written as plain text beside the labelled value.
"""

from __future__ import annotations

from guardrail.synth import lexicon as lx
from guardrail.synth.engine import Builder, Ctx, chance, slot
from guardrail.synth.names_intl import cjk_sep, intl_name

# ------------------------------------------------------------------------------------------ people


def _lang(ctx: Ctx) -> str:
    return ctx.locale[:2]


def _misspell(ctx: Ctx, s: str) -> str:
    # Real users mistype names; one edit keeps the name recognisable.
    if len(s) < 4 or not s.isalpha():
        return s
    i = ctx.rng.randrange(1, len(s) - 1)
    op = ctx.rng.randrange(3)
    if op == 0:
        return s[:i] + s[i + 1 :]
    if op == 1:
        return s[:i] + s[i] + s[i:]
    return s[: i - 1] + s[i] + s[i - 1] + s[i + 1 :]


def person(ctx: Ctx, new: bool = True) -> tuple[str, str]:
    """A (first, last) pair; remembered in the record so later slots can refer to the same person."""
    if not new and "person" in ctx.memo:
        return ctx.memo["person"]
    r = ctx.rng.random()
    if r < 0.14:
        n = intl_name(ctx)  # Hungarian, Czech, Slavic, Arabic, Indian, Nigerian, Vietnamese, Korean, ...
        first, last = n.first, n.last
    elif (ctx.locale == "ja_JP" and r < 0.35) or (ctx.locale == "zh_CN" and r < 0.3):
        # Romanised (Hepburn, pinyin): how these names are written in Latin-script text.
        first, last = ctx.fake.first_romanized_name(), ctx.fake.last_romanized_name()
    else:
        first, last = ctx.fake.first_name(), ctx.fake.last_name()
    if ctx.locale == "es_ES" and chance(ctx, 0.4):
        last = f"{last} {ctx.fake.last_name()}"  # two surnames
    ctx.memo["person"] = (first, last)
    ctx.memo.setdefault("people", []).append((first, last))
    return first, last


def _is_cjk(s: str) -> bool:
    return any("\u3040" <= ch <= "\u9fff" for ch in s)


def _vary_case(ctx: Ctx, s: str) -> str:
    r = ctx.rng.random()
    if r < 0.07:
        return s.lower()
    if r < 0.10:
        return s.upper()
    if r < 0.13:
        return _misspell(ctx, s)
    return s


def full_name(ctx: Ctx, first: str, last: str) -> str:
    """One surface form of a full name: order, initials and middle names vary."""
    if _is_cjk(last):
        return f"{last}{cjk_sep(ctx)}{first}"
    r = ctx.rng.random()
    if r < 0.55:
        s = f"{first} {last}"
    elif r < 0.65:
        s = f"{first} {ctx.rng.choice('ABCDEFGHJKLMNPRSTW')}. {last}"
    elif r < 0.72:
        middle = ctx.fake.first_name()
        if _is_cjk(middle):  # a Latin-script name gets no Han or kana middle name
            middle = ctx.fake.first_romanized_name()
        s = f"{first} {middle} {last}"
    elif r < 0.80:
        s = f"{first[0]}. {last}"
    elif r < 0.86:
        s = f"{last}, {first}"
    elif r < 0.90:
        s = f"{last.upper()} {first}"
    elif r < 0.94:
        s = f"{first[0]}.{ctx.rng.choice((' ', ''))}{ctx.rng.choice('ABCDEFGHJKLMNPRSTW')}. {last}"
    else:
        s = f"{first} {last}"
    return _vary_case(ctx, s)


@slot("NAME")
def _name(ctx: Ctx, b: Builder) -> None:
    first, last = person(ctx)
    b.add(full_name(ctx, first, last), "PERSON")


@slot("FIRST")
def _first(ctx: Ctx, b: Builder) -> None:
    b.add(_vary_case(ctx, person(ctx)[0]), "PERSON")


@slot("LAST")
def _last(ctx: Ctx, b: Builder) -> None:
    b.add(_vary_case(ctx, person(ctx)[1]), "PERSON")


@slot("SAMEFIRST")
def _same_first(ctx: Ctx, b: Builder) -> None:
    b.add(person(ctx, new=False)[0], "PERSON")


@slot("TNAME")
def _titled(ctx: Ctx, b: Builder) -> None:
    """Title + name: the title stays outside the span."""
    first, last = person(ctx)
    if _is_cjk(last):
        b.add(last if chance(ctx, 0.6) else f"{last}{first}", "PERSON")
        b.add(ctx.rng.choice(lx.ZH_HONORIFICS if _lang(ctx) == "zh" else lx.JA_HONORIFICS))
        return
    titles = lx.TITLES.get(_lang(ctx), lx.TITLES["en"])
    if _lang(ctx) != "en" and chance(ctx, 0.3):
        titles = lx.TITLES["en"]
    title = ctx.rng.choice(titles)
    b.add(f"{title} " if title else "")
    b.add(last if chance(ctx, 0.6) else f"{first} {last}", "PERSON")


@slot("PERSON")
def _any_person(ctx: Ctx, b: Builder) -> None:
    r = ctx.rng.random()
    (_name if r < 0.6 else _titled if r < 0.75 else _first if r < 0.92 else _last)(ctx, b)


# ----------------------------------------------------------------------------------------- contact

_FREE_MAIL = (
    "gmail.com", "outlook.com", "yahoo.com", "hotmail.co.uk", "icloud.com", "proton.me", "gmx.de",
    "web.de", "orange.fr", "free.fr", "libero.it", "yahoo.co.jp", "docomo.ne.jp", "aol.com", "mail.com",
)  # fmt: skip


def _ascii(s: str) -> str:
    import unicodedata

    s = unicodedata.normalize("NFKD", s).encode("ascii", "ignore").decode()
    return "".join(ch for ch in s.lower() if ch.isalnum() or ch in "-_.")


def email_of(ctx: Ctx) -> str:
    """An email, half the time built from the record's person (jane.doe@…)."""
    if chance(ctx, 0.45) and "person" in ctx.memo:
        first, last = (_ascii(x) for x in ctx.memo["person"])
        if first and last:
            dom = ctx.rng.choice(_FREE_MAIL) if chance(ctx, 0.6) else ctx.fake.domain_name()
            n = ctx.rng.randint(1, 99)
            local = ctx.rng.choice(
                (f"{first}.{last}", f"{first[0]}{last}", f"{first}{n}", f"{last}.{first}",
                 f"{first}_{last}{n}", f"{first}{last}", f"{first[0]}.{last}{n}")
            )  # fmt: skip
            return f"{local}@{dom}"
    r = ctx.rng.random()
    if r < 0.4:
        return ctx.fake.free_email()
    if r < 0.7:
        return ctx.fake.company_email()
    return ctx.fake.email()


@slot("EMAIL")
def _email(ctx: Ctx, b: Builder) -> None:
    e = email_of(ctx)
    b.add(e.upper() if chance(ctx, 0.02) else e, "EMAIL")


def fill_digits(ctx: Ctx, pattern: str) -> str:
    """Replace each ``#`` of ``pattern`` with a random digit."""
    return "".join(str(ctx.rng.randrange(10)) if ch == "#" else ch for ch in pattern)


def _patterns(s: str) -> tuple[str, ...]:
    return tuple(x.strip() for x in s.split("|"))


# National formats by locale ('#' is a digit); Faker's own formats are mixed in as well.
_PHONE_FORMATS: dict[str, tuple[str, ...]] = {
    "en_US": _patterns("(###) ###-#### | ###-###-#### | +1 ### ### #### | ###.###.#### | 1-###-###-####"),
    "en_GB": _patterns("07### ###### | +44 7### ###### | 020 #### #### | +44 (0)20 #### #### | 01### ######"),
    "de_DE": _patterns(
        "0151 ######## | +49 30 ######## | +49 (0) 89 ####### | 030/####### | 0171-####### | 0176 ########"
        " | +49 176 ######## | 089 ######## | (040) ####### | 0049 151 ########"
    ),
    "fr_FR": _patterns("06 ## ## ## ## | +33 6 ## ## ## ## | 01.##.##.##.## | +336######## | 07 ## ## ## ##"),
    "es_ES": _patterns(
        "6## ### ### | +34 6## ## ## ## | 91 ### ## ## | +34 9## ### ### | +34 6## ### ### | 6########"
        " | 93 ### ## ## | 0034 7## ### ###"
    ),
    "it_IT": _patterns("3## ### #### | +39 3## ####### | 06 #### #### | +39 02 ######## | 3#########"),
    "ja_JP": _patterns(
        "090-####-#### | 080-####-#### | 03-####-#### | +81 90 #### #### | 06(####)#### | 070-####-####"
        " | 09########"
    ),
    "zh_CN": _patterns(
        "13######### | 15######### | 18######### | 17######### | 139 #### #### | +86 13# #### ####"
        " | +86 18#-####-#### | +8615######### | 010-######## | 021-######## | 0755-######## | (020) ########"
    ),
    "intl": _patterns(
        "+1########## | 0044 161 ### #### | +4917######## | 0120-###-### | +61 4## ### ### | +91 ##### #####"
    ),
}


# Locales whose Faker phone formats look like real numbers (de_DE yields "00669 074391", es_ES
# "+34882 580 730", ja_JP "16-2803-0147": the tables above stand in for those).
_FAKER_PHONES = frozenset(("en_US", "en_GB", "fr_FR", "it_IT", "zh_CN"))


def phone_of(ctx: Ctx) -> str:
    """A phone number in one of many national and international formats."""
    rng = ctx.rng
    if chance(ctx, 0.35) and ctx.locale in _FAKER_PHONES:
        s = ctx.fake.phone_number()
    else:
        loc = ctx.locale if chance(ctx, 0.8) else rng.choice(tuple(_PHONE_FORMATS))
        s = fill_digits(ctx, rng.choice(_PHONE_FORMATS.get(loc, _PHONE_FORMATS["en_US"])))
    if chance(ctx, 0.06):
        s += rng.choice((" ext. ", " x", " ext ", "#")) + fill_digits(ctx, "#" * rng.randint(2, 4))
    return s


@slot("PHONE")
def _phone(ctx: Ctx, b: Builder) -> None:
    b.add(phone_of(ctx), "PHONE")


# ---------------------------------------------------------------------------------------- addresses


def _clean_lines(s: str) -> list[str]:
    return [ln.strip() for ln in s.splitlines() if ln.strip()]


def address_of(ctx: Ctx, multiline: bool | None = None) -> str:
    """A whole postal address (street to country): one ADDRESS span."""
    if ctx.locale[:2] == "zh":
        # Province to building, then the postcode; a country, if any, comes first and unspaced.
        head, _, post = " ".join(_clean_lines(ctx.fake.address())).rpartition(" ")
        r = ctx.rng.random()
        if not head or r < 0.5:
            return f"{head} {post}".strip()
        if r < 0.75:
            return head
        return f"中国{head}" if r < 0.9 else f"{head}（邮编：{post}）"
    lines = _clean_lines(ctx.fake.address())
    if chance(ctx, 0.25):
        lines.append(ctx.fake.current_country() if chance(ctx, 0.5) else ctx.rng.choice(lx.COUNTRIES))
    if multiline is None:
        multiline = chance(ctx, 0.3)
    s = "\n".join(lines) if multiline else ", ".join(lines)
    if chance(ctx, 0.05):
        s = s.upper()
    return s


@slot("ADDRESS")
def _address(ctx: Ctx, b: Builder) -> None:
    b.add(address_of(ctx, multiline=False), "ADDRESS")


@slot("ADDRESS_ML")
def _address_ml(ctx: Ctx, b: Builder) -> None:
    b.add(address_of(ctx, multiline=True), "ADDRESS")


@slot("STREET")
def _street(ctx: Ctx, b: Builder) -> None:
    b.add(ctx.fake.street_address(), "ADDRESS")


@slot("POSTCODE")
def _postcode(ctx: Ctx, b: Builder) -> None:
    b.add(ctx.fake.postcode(), "ADDRESS")


# ----------------------------------------------------------------------------------------- places


@slot("CITY")
def _city(ctx: Ctx, b: Builder) -> None:
    b.add(ctx.fake.city() if chance(ctx, 0.5) else ctx.rng.choice(lx.CITIES), "LOCATION")


@slot("COUNTRY")
def _country(ctx: Ctx, b: Builder) -> None:
    # Faker's country names carry notes in parentheses ("Bouvet Island (Bouvetoya)"): drop them.
    name = ctx.rng.choice(lx.COUNTRIES) if chance(ctx, 0.7) else ctx.fake.country().split(" (")[0]
    b.add(name, "LOCATION")


@slot("REGION")
def _region(ctx: Ctx, b: Builder) -> None:
    b.add(ctx.rng.choice(lx.REGIONS) if chance(ctx, 0.6) else ctx.fake.administrative_unit(), "LOCATION")


@slot("LOC")
def _location(ctx: Ctx, b: Builder) -> None:
    r = ctx.rng.random()
    (_city if r < 0.5 else _country if r < 0.75 else _region)(ctx, b)


# ----------------------------------------------------------------------------------- organisations


@slot("ORG")
def _org(ctx: Ctx, b: Builder) -> None:
    r = ctx.rng.random()
    if r < 0.35:
        s = ctx.fake.company()
    elif r < 0.6:
        s = ctx.rng.choice(lx.COMPANIES)
    elif r < 0.72:
        s = ctx.rng.choice(lx.BANDS)
    elif r < 0.84:
        s = ctx.rng.choice(lx.TEAMS)
    elif r < 0.93:
        s = ctx.rng.choice(lx.UNIVERSITIES)
    else:
        s = ctx.rng.choice(lx.AGENCIES)
    _add_org(b, s)


def _add_org(b: Builder, s: str) -> None:
    # "the" before a name is not part of the organisation's name.
    if s.startswith("the "):
        b.add("the ")
        s = s[4:]
    b.add(s, "ORGANIZATION")


@slot("COMPANY")
def _company(ctx: Ctx, b: Builder) -> None:
    _add_org(b, ctx.fake.company() if chance(ctx, 0.5) else ctx.rng.choice(lx.COMPANIES))


@slot("BAND")
def _band(ctx: Ctx, b: Builder) -> None:
    _add_org(b, ctx.rng.choice(lx.BANDS))


@slot("TEAM")
def _team(ctx: Ctx, b: Builder) -> None:
    _add_org(b, ctx.rng.choice(lx.TEAMS))


@slot("UNI")
def _uni(ctx: Ctx, b: Builder) -> None:
    _add_org(b, ctx.rng.choice(lx.UNIVERSITIES))


@slot("AGENCY")
def _agency(ctx: Ctx, b: Builder) -> None:
    _add_org(b, ctx.rng.choice(lx.AGENCIES))

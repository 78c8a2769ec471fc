"""Slot fillers for identifiers: ID numbers, cards, IBANs, IPs, URLs, usernames and passwords.

Checksummed identifiers (cards: Luhn; IBAN: mod 97; NHS: mod 11; DNI: mod 23) are valid, so that
the probe's training data agrees with the validated patterns it is unioned with.
"""

from __future__ import annotations

import string

from guardrail.synth.engine import Builder, Ctx, chance, is_cjk, slot
from guardrail.synth.values import _ascii, fill_digits, person

_UP = string.ascii_uppercase


def _letters(ctx: Ctx, n: int) -> str:
    return "".join(ctx.rng.choice(_UP) for _ in range(n))


# ---------------------------------------------------------------------------------------- ID numbers


def _nhs(ctx: Ctx) -> str:
    while True:
        d = [ctx.rng.randrange(10) for _ in range(9)]
        check = 11 - sum(x * (10 - i) for i, x in enumerate(d)) % 11
        if check == 11:
            check = 0
        if check != 10:
            s = "".join(map(str, d)) + str(check)
            return ctx.rng.choice((f"{s[:3]} {s[3:6]} {s[6:]}", s, f"{s[:3]}-{s[3:6]}-{s[6:]}"))


def _dni(ctx: Ctx) -> str:
    n = ctx.rng.randrange(10_000_000, 99_999_999)
    return f"{n}{'TRWAGMYFPDXBNJZSQVHLCKE'[n % 23]}"


def _nie(ctx: Ctx) -> str:
    p = ctx.rng.randrange(3)
    n = ctx.rng.randrange(1_000_000, 9_999_999)
    return f"{'XYZ'[p]}{n}{'TRWAGMYFPDXBNJZSQVHLCKE'[int(f'{p}{n}') % 23]}"


def _nino(ctx: Ctx) -> str:
    pre = ctx.rng.choice(("AB", "CE", "JG", "KL", "NP", "PR", "SK", "TW", "WE", "YZ", "HN", "EB"))
    d = fill_digits(ctx, "######")
    suf = ctx.rng.choice("ABCD")
    return f"{pre} {d[:2]} {d[2:4]} {d[4:]} {suf}" if chance(ctx, 0.5) else f"{pre}{d}{suf}"


def _ssn(ctx: Ctx) -> str:
    area = ctx.rng.choice([a for a in range(1, 900) if a != 666])
    g, s = ctx.rng.randrange(1, 100), ctx.rng.randrange(1, 10000)
    sep = ctx.rng.choice(("-", "-", "-", " ", ""))
    return f"{area:03d}{sep}{g:02d}{sep}{s:04d}"


def _insee(ctx: Ctx) -> str:
    month = ctx.rng.randint(1, 12)
    s = f"{ctx.rng.choice('12')}{fill_digits(ctx, '##')}{month:02d}{fill_digits(ctx, '########')}"
    key = 97 - int(s) % 97
    if chance(ctx, 0.5):
        return f"{s[0]} {s[1:3]} {s[3:5]} {s[5:7]} {s[7:10]} {s[10:13]} {key:02d}"
    return f"{s}{key:02d}"


_CN_AREAS = (
    "110101", "110105", "110108", "310104", "310115", "440106", "440305", "320102", "330106", "510104",
    "420102", "610113", "500103", "120101", "370202", "210202", "350203", "430104", "410105", "130102",
)  # fmt: skip
_CN_WEIGHTS = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)


def cn_resident_id(ctx: Ctx) -> str:
    """An 18-character PRC resident ID: area, birth date, sequence, ISO 7064 MOD 11-2 check."""
    born = f"{ctx.rng.randint(1945, 2008)}{ctx.rng.randint(1, 12):02d}{ctx.rng.randint(1, 28):02d}"
    body = ctx.rng.choice(_CN_AREAS) + born + fill_digits(ctx, "###")
    check = "10X98765432"[sum(int(d) * w for d, w in zip(body, _CN_WEIGHTS, strict=True)) % 11]
    s = body + check
    return f"{s[:6]} {s[6:14]} {s[14:]}" if chance(ctx, 0.1) else s


# (kind, locale or "*", generator) — the kind names the document, the value is the ID_NUMBER span.
_IDS = (
    ("SSN", "en_US", _ssn),
    ("social security number", "en_US", _ssn),
    ("driver's license", "en_US", lambda c: c.rng.choice(("D", "F", "S", "A")) + fill_digits(c, "#######")),
    ("ITIN", "en_US", lambda c: fill_digits(c, "9##-7#-####")),
    ("EIN", "en_US", lambda c: fill_digits(c, "##-#######")),
    ("National Insurance number", "en_GB", _nino),
    ("NI number", "en_GB", _nino),
    ("NHS number", "en_GB", _nhs),
    (
        "driving licence number",
        "en_GB",
        lambda c: _letters(c, 5) + fill_digits(c, "######") + _letters(c, 2) + "9",
    ),
    ("UTR", "en_GB", lambda c: fill_digits(c, "##########")),
    ("Steuer-ID", "de_DE", lambda c: fill_digits(c, "## ### ### ###")),
    (
        "Personalausweisnummer",
        "de_DE",
        lambda c: c.rng.choice("LMNT") + _letters(c, 1) + fill_digits(c, "#######"),
    ),
    (
        "Sozialversicherungsnummer",
        "de_DE",
        lambda c: fill_digits(c, "## ######") + _letters(c, 1) + fill_digits(c, "###"),
    ),
    ("numéro de sécurité sociale", "fr_FR", _insee),
    ("INSEE number", "fr_FR", _insee),
    ("numéro fiscal", "fr_FR", lambda c: fill_digits(c, "## ## ### ### ###")),
    ("DNI", "es_ES", _dni),
    ("NIE", "es_ES", _nie),
    ("NSS", "es_ES", lambda c: fill_digits(c, "28/########/##")),
    ("codice fiscale", "it_IT", lambda c: c.fake.ssn()),
    ("tessera sanitaria", "it_IT", lambda c: fill_digits(c, "80380###########")),
    ("マイナンバー", "ja_JP", lambda c: fill_digits(c, "#### #### ####")),
    ("My Number", "ja_JP", lambda c: fill_digits(c, "############")),
    ("身份证号", "zh_CN", cn_resident_id),
    ("身份证号码", "zh_CN", cn_resident_id),
    ("居民身份证", "zh_CN", cn_resident_id),
    ("Chinese ID number", "zh_CN", cn_resident_id),
    ("护照号码", "zh_CN", lambda c: c.rng.choice("EG") + fill_digits(c, "########")),
    ("passport number", "*", lambda c: c.fake.passport_number()),
    ("passport no.", "*", lambda c: _letters(c, c.rng.randint(1, 2)) + fill_digits(c, "#######")),
    ("patient ID", "*", lambda c: c.rng.choice(("MRN-", "PT", "P-", "")) + fill_digits(c, "#######")),
    ("medical record number", "*", lambda c: fill_digits(c, "MRN ########")),
    ("employee ID", "*", lambda c: c.rng.choice(("EMP-", "E", "emp_", "")) + fill_digits(c, "#####")),
    ("member number", "*", lambda c: fill_digits(c, "M########")),
    ("customer number", "*", lambda c: c.rng.choice(("CUST-", "C", "KD-", "")) + fill_digits(c, "########")),
    ("student ID", "*", lambda c: fill_digits(c, "S########")),
    ("tax ID", "*", lambda c: fill_digits(c, "###-##-####")),
    ("national ID", "*", lambda c: fill_digits(c, "#########")),
    ("insurance policy number", "*", lambda c: _letters(c, 3) + fill_digits(c, "-#######")),
)


def id_of(ctx: Ctx) -> tuple[str, str]:
    """(kind, value): an ID of the record's locale 60% of the time, else any kind."""
    local = [x for x in _IDS if x[1] == ctx.locale]
    pool = local if local and chance(ctx, 0.6) else _IDS
    kind, _, gen = ctx.rng.choice(pool)
    return kind, gen(ctx)


@slot("ID")
def _id(ctx: Ctx, b: Builder) -> None:
    """A kind word and its value: "passport number X1234567" (only the value is the span)."""
    kind, val = id_of(ctx)
    if is_cjk(kind):
        b.add(kind + ctx.rng.choice(("：", "", "是", ": ")))
    else:
        b.add(kind + ctx.rng.choice((" ", ": ", " is ", " ", " #", " no. ")))
    b.add(val, "ID_NUMBER")


@slot("IDVAL")
def _id_val(ctx: Ctx, b: Builder) -> None:
    b.add(id_of(ctx)[1], "ID_NUMBER")


@slot("SSN")
def _ssn_slot(ctx: Ctx, b: Builder) -> None:
    b.add(_ssn(ctx), "ID_NUMBER")


@slot("PASSPORT")
def _passport(ctx: Ctx, b: Builder) -> None:
    b.add(ctx.fake.passport_number(), "ID_NUMBER")


@slot("PATIENTID")
def _patient(ctx: Ctx, b: Builder) -> None:
    b.add(ctx.rng.choice(("MRN-", "PT", "P-", "")) + fill_digits(ctx, "#######"), "ID_NUMBER")


# -------------------------------------------------------------------------------------- cards, IBAN


def luhn_ok(number: str) -> bool:
    """True if the digits of ``number`` pass the Luhn check."""
    digits = [int(c) for c in number if c.isdigit()]
    total = 0
    for i, d in enumerate(reversed(digits)):
        if i % 2:
            d *= 2
            if d > 9:
                d -= 9
        total += d
    return len(digits) >= 12 and total % 10 == 0


def card_of(ctx: Ctx) -> str:
    """A Luhn-valid card number from Faker, grouped with spaces, dashes or nothing."""
    num = ctx.fake.credit_card_number()
    sep = ctx.rng.choice((" ", " ", "-", ""))
    if not sep:
        return num
    groups = (4, 6, 5) if len(num) == 15 else (4,) * ((len(num) + 3) // 4)
    out, i = [], 0
    for g in groups:
        out.append(num[i : i + g])
        i += g
    return sep.join(x for x in out if x)


@slot("CARD")
def _card(ctx: Ctx, b: Builder) -> None:
    b.add(card_of(ctx), "CREDIT_CARD")


@slot("CARD4")
def _card_last4(ctx: Ctx, b: Builder) -> None:
    """'card ending in 4821': four digits are not a card number; left unlabelled."""
    b.add(fill_digits(ctx, "####"))


def iban_of(ctx: Ctx) -> str:
    """A mod-97-valid IBAN from Faker, in print (groups of 4) or electronic form."""
    s = ctx.fake.iban()
    if chance(ctx, 0.5):
        s = " ".join(s[i : i + 4] for i in range(0, len(s), 4))
    return s.lower() if chance(ctx, 0.04) else s


@slot("IBAN")
def _iban(ctx: Ctx, b: Builder) -> None:
    b.add(iban_of(ctx), "IBAN")


# ------------------------------------------------------------------------------------ network, web


def ip_of(ctx: Ctx) -> str:
    """An IPv4 (public or private) or IPv6 address."""
    r = ctx.rng.random()
    if r < 0.5:
        return ctx.fake.ipv4_public()
    if r < 0.75:
        return ctx.fake.ipv4_private()
    ip6 = ctx.fake.ipv6()
    return ip6 if chance(ctx, 0.7) else ip6.rsplit(":", 4)[0] + "::" + fill_digits(ctx, "##")


@slot("IP")
def _ip(ctx: Ctx, b: Builder) -> None:
    b.add(ip_of(ctx), "IP_ADDRESS")


def username_of(ctx: Ctx) -> str:
    """A handle or login, half the time from the record's person."""
    if chance(ctx, 0.5):
        first, last = (_ascii(x) for x in person(ctx, new=False))
        if first and last:
            n = ctx.rng.randint(1, 999)
            return ctx.rng.choice(
                (
                    f"{first}{last}",
                    f"{first}_{last}",
                    f"{first[0]}{last}{n}",
                    f"{last}.{first}",
                    f"{first}{n}",
                )
            )
    r = ctx.rng.random()
    if r < 0.6:
        return ctx.fake.user_name()
    adj = ctx.rng.choice(("dark", "happy", "lazy", "crypto", "pixel", "retro", "night", "silent", "turbo"))
    noun = ctx.rng.choice(("wolf", "panda", "coder", "gamer", "fox", "ninja", "rider", "owl", "dev"))
    return ctx.rng.choice((f"{adj}_{noun}{ctx.rng.randint(1, 99)}", f"{adj}{noun.title()}", f"x{adj}{noun}x"))


@slot("USERNAME")
def _username(ctx: Ctx, b: Builder) -> None:
    b.add(username_of(ctx), "USERNAME")


@slot("HANDLE")
def _handle(ctx: Ctx, b: Builder) -> None:
    b.add("@" + username_of(ctx), "USERNAME")


_PROFILE_SITES = (
    "https://www.linkedin.com/in/{u}", "https://github.com/{u}", "https://twitter.com/{u}", "https://x.com/{u}",
    "https://www.instagram.com/{u}/", "https://www.facebook.com/{u}", "https://medium.com/@{u}",
    "https://{u}.github.io", "https://www.tiktok.com/@{u}", "linkedin.com/in/{u}", "https://mastodon.social/@{u}",
)  # fmt: skip


def url_of(ctx: Ctx, personal: bool | None = None) -> str:
    """A URL; ``personal`` ones point at someone's profile or homepage."""
    if personal is None:
        personal = chance(ctx, 0.45)
    if personal:
        return ctx.rng.choice(_PROFILE_SITES).format(u=username_of(ctx).replace(".", "-"))
    r = ctx.rng.random()
    if r < 0.4:
        return ctx.fake.url()
    if r < 0.7:
        return f"{ctx.fake.url()}{ctx.fake.uri_path()}"
    if r < 0.85:
        return "www." + ctx.fake.domain_name()
    return ctx.fake.uri()


@slot("URL")
def _url(ctx: Ctx, b: Builder) -> None:
    b.add(url_of(ctx), "URL")


@slot("PROFILE")
def _profile(ctx: Ctx, b: Builder) -> None:
    b.add(url_of(ctx, personal=True), "URL")


def password_of(ctx: Ctx) -> str:
    """A machine-made or human-made password."""
    r = ctx.rng.random()
    if r < 0.45:
        return ctx.fake.password(length=ctx.rng.randint(8, 16))
    word = ctx.rng.choice(
        ("summer", "dragon", "monkey", "sunshine", "football", "princess", "welcome", "letmein")
    )
    word = word.title() if chance(ctx, 0.5) else word
    n = ctx.rng.choice((str(ctx.rng.randint(1, 99)), str(ctx.rng.randint(1970, 2025)), "123", ""))
    sym = ctx.rng.choice(("!", "@", "#", "$", "", "?!"))
    if r < 0.8:
        return f"{word}{n}{sym}"
    return f"{sym}{word.replace('o', '0').replace('a', '@')}{n}" or "hunter2"


@slot("PASSWORD")
def _password(ctx: Ctx, b: Builder) -> None:
    b.add(password_of(ctx), "PASSWORD")

"""Unlabelled hard negatives: things that look like identifiers or names but are not personal data.

Order numbers, prices, versions, products named after people ("Dr Pepper"), titles of works,
landmarks and code identifiers are written with no span, so that the probe learns to leave them.
"""

from __future__ import annotations

from guardrail.synth import lexicon as lx
from guardrail.synth.engine import Builder, Ctx, chance, is_cjk, slot
from guardrail.synth.values import fill_digits

_WHEN = lx.items(
    "tomorrow | today | next week | next Tuesday | this Friday | tonight | on Monday | by end of day | "
    "later this month | yesterday | last weekend | over the weekend"
)
_ERRORS = lx.items(
    "HTTP 503 | error 404 | E1021 | 0x80070005 | ERR_CONNECTION_RESET | code 429 | exit code 137 | "
    "ORA-00942 | SQLSTATE 23505 | HTTP 401 | status 500 | NullPointerException | ECONNREFUSED"
)
_CODEWORDS = lx.items(
    "prod-eu-west-1 | staging | feature/new-checkout | FEATURE_DARK_MODE | main | release/2.4 | us-east-1 | "
    "api-gateway | worker-3 | db-replica-02 | k8s-node-7 | PR #482 | build 1187"
)
_HEX = "0123456789abcdef"


def _hex(ctx: Ctx, n: int) -> str:
    return "".join(ctx.rng.choice(_HEX) for _ in range(n))


def _up(ctx: Ctx, n: int) -> str:
    return "".join(ctx.rng.choice("ABCDEFGHJKLMNPQRSTUVWXYZ") for _ in range(n))


@slot("ORDER")
def _order(ctx: Ctx, b: Builder) -> None:
    pat = ctx.rng.choice(("A-#####", "######", "###-#######-#######", "ORD-######", "#######", "SO#####"))
    s = fill_digits(ctx, pat).replace("A", _up(ctx, 1))
    # After a Japanese or Chinese word ("注文番号") no English "number " goes in between.
    b.add(ctx.rng.choice(("#", "", "") if is_cjk(b.last_char()) else ("#", "", "", "no. ", "number ")) + s)


@slot("TICKET")
def _ticket(ctx: Ctx, b: Builder) -> None:
    pre = ctx.rng.choice(("INC00", "REQ", "CS-", "SUP-", "JIRA-", "TKT", "#", "CHG00", "PROJ-", "BUG-"))
    b.add(pre + fill_digits(ctx, "#" * ctx.rng.randint(3, 7)))


@slot("INVOICE")
def _invoice(ctx: Ctx, b: Builder) -> None:
    b.add(
        ctx.rng.choice(("INV-", "RE-", "F", "INV/2024/", "")) + fill_digits(ctx, "#" * ctx.rng.randint(4, 7))
    )


@slot("TRACKING")
def _tracking(ctx: Ctx, b: Builder) -> None:
    r = ctx.rng.random()
    if r < 0.4:
        b.add("1Z" + _up(ctx, 3) + fill_digits(ctx, "###########"))
    elif r < 0.7:
        b.add(_up(ctx, 2) + fill_digits(ctx, "#########") + ctx.rng.choice(("GB", "DE", "FR", "JP", "US")))
    else:
        b.add(fill_digits(ctx, "#### #### #### ####"[: ctx.rng.choice((14, 19))]))


@slot("SKU")
def _sku(ctx: Ctx, b: Builder) -> None:
    b.add(ctx.rng.choice(("SKU ", "item ", "part no. ", "")) + _up(ctx, 2) + fill_digits(ctx, "-####-##"))


@slot("PRICE")
def _price(ctx: Ctx, b: Builder) -> None:
    amt = ctx.rng.choice((ctx.rng.randint(1, 99), ctx.rng.randint(100, 5000), ctx.rng.randint(1, 999) + 0.99))
    lang = ctx.locale[:2]
    if lang in ("ja", "zh") and chance(ctx, 0.6):
        n = int(amt) * (100 if lang == "ja" else 1)
        forms = (
            (f"{n:,}円", f"¥{n:,}", f"{n}円（税込）")
            if lang == "ja"
            else (f"{n}元", f"¥{n:,}", f"人民币{n}元")
        )
        b.add(ctx.rng.choice(forms))
        return
    cents = f"{amt:,.2f}" if isinstance(amt, float) or chance(ctx, 0.4) else f"{amt:,}"
    cur = ctx.rng.choice(("$", "€", "£", "¥", "USD ", "EUR ", "CHF "))
    if cur == "€" and chance(ctx, 0.5):
        b.add(cents.replace(",", " ").replace(".", ",") + " €")
    else:
        b.add(cur + cents)


@slot("QTY")
def _qty(ctx: Ctx, b: Builder) -> None:
    n = ctx.rng.randint(2, 500)
    unit = ctx.rng.choice(("units", "boxes", "kg", "GB", "pages", "items", "licenses", "seats", "ml", "pcs"))
    b.add(f"{n} {unit}")


@slot("NUM")
def _num(ctx: Ctx, b: Builder) -> None:
    r = ctx.rng.random()
    n = (
        ctx.rng.randint(2, 60)
        if r < 0.6
        else ctx.rng.randint(61, 9999)
        if r < 0.92
        else ctx.rng.randint(10**4, 10**6)
    )
    b.add(str(n))


@slot("SCORE")
def _score(ctx: Ctx, b: Builder) -> None:
    b.add(f"{ctx.rng.randint(0, 6)}{ctx.rng.choice(('-', '-', ':', ' - '))}{ctx.rng.randint(0, 6)}")


@slot("PERCENT")
def _percent(ctx: Ctx, b: Builder) -> None:
    b.add(f"{ctx.rng.randint(1, 99)}{ctx.rng.choice(('', '.5'))}%")


@slot("DURATION")
def _duration(ctx: Ctx, b: Builder) -> None:
    n = ctx.rng.randint(2, 48)
    b.add(f"{n} {ctx.rng.choice(('minutes', 'hours', 'days', 'weeks', 'seconds', 'mins', 'hrs', 'months'))}")


@slot("TIME")
def _time(ctx: Ctx, b: Builder) -> None:
    # Bare clock times are not dates of anyone; only a date (+ time) is labelled DATE.
    h = ctx.rng.randint(1, 12)
    b.add(ctx.rng.choice((f"{h}pm", f"{h}:30", f"{h} o'clock", f"{h + 8:02d}:00", f"{h}:15 am", "noon")))


@slot("WHEN")
def _when(ctx: Ctx, b: Builder) -> None:
    """Relative days ("next Tuesday", "tomorrow"): not a calendar date, left unlabelled."""
    b.add(ctx.rng.choice(_WHEN))


@slot("VERSION")
def _version(ctx: Ctx, b: Builder) -> None:
    v = f"{ctx.rng.randint(0, 17)}.{ctx.rng.randint(0, 30)}" + (
        f".{ctx.rng.randint(0, 9)}" if chance(ctx, 0.6) else ""
    )
    b.add(ctx.rng.choice(("v", "", "version ", "release ")) + v)


@slot("PRODUCT")
def _product(ctx: Ctx, b: Builder) -> None:
    b.add(ctx.rng.choice(lx.PRODUCTS))


@slot("WORK")
def _work(ctx: Ctx, b: Builder) -> None:
    w = ctx.rng.choice(lx.WORKS)
    q = ctx.rng.choice(('"', "", "", "“"))
    b.add(f"{q}{w}{'”' if q == '“' else q}")


@slot("LANDMARK")
def _landmark(ctx: Ctx, b: Builder) -> None:
    b.add(ctx.rng.choice(lx.LANDMARKS))


@slot("FUNC")
def _func(ctx: Ctx, b: Builder) -> None:
    verb = ctx.rng.choice(("get", "load", "parse", "send", "build", "update", "fetch", "validate", "render"))
    noun = ctx.rng.choice(("user", "config", "invoice", "session", "token", "record", "payload", "cache"))
    r = ctx.rng.random()
    if r < 0.4:
        s = f"{verb}_{noun}()"
    elif r < 0.7:
        s = f"{verb}{noun.title()}()"
    else:
        s = f"{noun.title()}Service.{verb}{ctx.rng.choice(('', 'All', 'ById', 'Async'))}"
    b.add(s)


@slot("PATH")
def _path(ctx: Ctx, b: Builder) -> None:
    d = ctx.rng.choice(
        ("src", "app", "lib", "config", "tests", "/var/log", "/etc/nginx", "C:\\Program Files")
    )
    f = ctx.rng.choice(
        ("main.py", "index.ts", "settings.yaml", "app.log", "Dockerfile", "utils.go", "README.md")
    )
    sep = "\\" if d.startswith("C:") else "/"
    b.add(f"{d}{sep}{f}")


@slot("HASH")
def _hash(ctx: Ctx, b: Builder) -> None:
    b.add(_hex(ctx, ctx.rng.choice((7, 7, 12, 40, 64))))


@slot("UUID")
def _uuid(ctx: Ctx, b: Builder) -> None:
    h = _hex(ctx, 32)
    b.add(f"{h[:8]}-{h[8:12]}-4{h[13:16]}-{ctx.rng.choice('89ab')}{h[17:20]}-{h[20:]}")


@slot("ERRCODE")
def _err(ctx: Ctx, b: Builder) -> None:
    b.add(ctx.rng.choice(_ERRORS))


@slot("FLIGHT")
def _flight(ctx: Ctx, b: Builder) -> None:
    b.add(
        ctx.rng.choice(("LH", "BA", "AF", "IB", "AZ", "JL", "UA", "DL", "EZY", "FR"))
        + fill_digits(ctx, " ###")
    )


@slot("CODEWORD")
def _codeword(ctx: Ctx, b: Builder) -> None:
    """Environment names, feature flags and the like: identifier-shaped, not personal."""
    b.add(ctx.rng.choice(_CODEWORDS))

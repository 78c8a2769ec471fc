"""Hard negatives in the shapes of real text: tables, sports results, amounts, counts, clock times,
chat filler, treebank and social-media tokenisation, legal prose, all-caps headlines and listings.

Numbers, scores, prices, counts, clock times and capitalised common nouns ("Hatchback") carry no
span. Whatever the rest of the generator labels keeps its label here too, so that number-heavy or
oddly tokenised text is no evidence either way: people are PERSON (a scorer, a party to a case),
teams and companies ORGANIZATION, calendar dates DATE, URLs URL and handles USERNAME. The
``hardneg`` shape writes whole records of such text; the ``{HARDNEG}`` slot mixes one piece into
records that carry personal data.
"""

from __future__ import annotations

import re
from collections.abc import Callable

from guardrail.synth import lexicon as lx
from guardrail.synth import prose
from guardrail.synth.engine import Builder, Ctx, chance, is_cjk, pick, render, rewrite, slot, stable_hash
from guardrail.synth.frames_people import SINGLE
from guardrail.synth.names_intl import full, new_name

items = lx.items

# ------------------------------------------------------------------------------------- small slots

_NOUNS = items(
    "houses | flats | bedrooms | goals | runs | wickets | laps | votes | seats | tickets | copies | "
    "students | cases | trucks | boxes | floors | steps | reps | sets | pallets | units | km | rooms | "
    "apples | eggs | cups of flour | days | nights | players | points | tables"
)
_CAR_MODELS = items(
    "Ford Focus | VW Golf | Toyota Yaris | Vauxhall Astra | Renault Clio | Peugeot 208 | Seat Ibiza | "
    "Fiat Panda | Honda Civic | BMW 3 Series | Skoda Octavia | Kia Sportage | Nissan Qashqai | Mazda 3 | "
    "Hyundai i30 | Audi A4 | Mercedes C-Class | Volvo V60 | Citroën C3 | Opel Corsa"
)
_CAR_BODIES = items(
    "Hatchback | Sedan | Saloon | Estate | Coupe | Convertible | SUV | MPV | Pickup | Crossover | "
    "Cabriolet | Roadster | Minivan | Station Wagon | Hatch | Tourer"
)
_HASHTAGS = items(
    "#MUFC | #COYG | #NBAFinals | #F1 | #tbt | #MondayMotivation | #ad | #giveaway | #WorldCup | "
    "#BlackFriday | #100DaysOfCode | #OOTD | #foodie | #nofilter | #ThrowbackThursday | #MatchDay | "
    "#Bundesliga | #LaLiga | #Ligue1 | #SerieA | #GBBO | #Eurovision | #NowPlaying | #travel | #tech"
)
_DAYS = items("Monday | Tuesday | Wednesday | Thursday | Friday | Saturday | Sunday")
_ALNUM = "abcdefghijkmnopqrstuvwxyzABCDEFGHJKLMNPQRSTUVWXYZ0123456789"


@slot("COUNT")
def _count(ctx: Ctx, b: Builder) -> None:
    """A count of things ("10 houses", "3 of 5") or a bare padded number ("06", "000")."""
    r, n = ctx.rng.random(), ctx.rng.choice((ctx.rng.randint(2, 20), ctx.rng.randint(2, 500)))
    if r < 0.55:
        b.add(f"{n} {ctx.rng.choice(_NOUNS)}")
    elif r < 0.75:
        b.add(ctx.rng.choice(("000", "00", "06", "07", "01", "0001", f"{n:02d}", f"{n:03d}")))
    else:
        b.add(
            ctx.rng.choice(
                (f"x{n}", f"#{n}", f"No. {n}", f"{n} of {n + ctx.rng.randint(1, 9)}", "24/7", f"{n}k",
                 f"Room {n}", f"page {n}", f"Gate B{n}", f"Row {n}, Seat {ctx.rng.randint(1, 30)}")
            )
        )  # fmt: skip


@slot("SMALL")
def _small(ctx: Ctx, b: Builder) -> None:
    """A small number: goals, sets, rebounds, servings."""
    b.add(str(ctx.rng.choice((ctx.rng.randint(0, 9), ctx.rng.randint(0, 9), ctx.rng.randint(10, 40)))))


@slot("PAD")
def _pad(ctx: Ctx, b: Builder) -> None:
    b.add(f"{ctx.rng.randint(0, 12):02d}")


@slot("BIGAMOUNT")
def _big_amount(ctx: Ctx, b: Builder) -> None:
    """Amounts as news and reports write them: "$1.2bn", "€4.5 million", "1.299,00 €"."""
    x = ctx.rng.randint(1, 999)
    b.add(
        ctx.rng.choice(
            (f"${x / 10:.1f}bn", f"€{x / 10:.1f} million", f"£{x}k", f"USD {x},{ctx.rng.randint(0, 999):03d}",
             f"{x}.{ctx.rng.randint(0, 999):03d},00 €", f"{x} 000 €", f"CHF {x}'250.00", f"R$ {x},90",
             f"¥{x},800", f"{x}p", f"${x}.99/month", f"₹{x},500", f"{x} million euros")
        )
    )  # fmt: skip


@slot("THOUSANDS")
def _thousands(ctx: Ctx, b: Builder) -> None:
    n = ctx.rng.randint(1000, 2_000_000)
    b.add(ctx.rng.choice((f"{n:,}", f"{n:,}".replace(",", " "), f"{n:,}".replace(",", "."), str(n))))


@slot("CLOCK")
def _clock(ctx: Ctx, b: Builder) -> None:
    """A clock time in the frame's language: not a calendar date, so unlabelled (like ``TIME``)."""
    h, m = ctx.rng.randint(0, 23), ctx.rng.choice((0, 0, 15, 30, 45, ctx.rng.randint(0, 59)))
    h12 = h % 12 or 12
    lang = ctx.memo.get("lang", "en")
    if ctx.locale[:2] in ("ja", "zh") and is_cjk(b.last_char()):
        lang = ctx.locale[:2]  # inside a Japanese or Chinese frame
    if lang == "ja":
        ampm = "午後" if h >= 12 else "午前"
        forms: tuple[str, ...] = (f"{h}:{m:02d}", f"{h}時{m:02d}分", f"{ampm}{h12}時")
    elif lang == "zh":
        ampm = "晚上" if h >= 18 else "下午" if h >= 12 else "上午"
        forms = (f"{h}:{m:02d}", f"{ampm}{h12}点", f"{h}点{m}分", f"{ampm}{h12}点半")
    elif lang == "de":
        forms = (f"{h}:{m:02d} Uhr", f"{h} Uhr", f"{h:02d}:{m:02d}")
    elif lang == "fr":
        forms = (f"{h}h{m:02d}", f"{h} h", f"{h:02d}:{m:02d}")
    else:
        forms = (
            f"{h:02d}:{m:02d}", f"{h12}:{m:02d}", f"{h12}pm", f"{h12}:{m:02d} p.m.", f"{h12} AM",
            f"{h:02d}{m:02d} hrs", "noon", "midnight", "half past six", "quarter to five",
        )  # fmt: skip
    b.add(ctx.rng.choice(forms))


@slot("HOURS")
def _hours(ctx: Ctx, b: Builder) -> None:
    a, z = ctx.rng.randint(6, 11), ctx.rng.randint(16, 22)
    b.add(ctx.rng.choice((f"{a}:00–{z}:30", f"{a}–{z - 12}", f"{a:02d}:00-{z:02d}:00", f"{a}am-{z - 12}pm")))


@slot("STOPWATCH")
def _stopwatch(ctx: Ctx, b: Builder) -> None:
    h, m, s = ctx.rng.randint(0, 3), ctx.rng.randint(0, 59), ctx.rng.randint(0, 59)
    b.add(
        ctx.rng.choice(
            (f"{h:02d}:{m:02d}:{s:02d}", f"{m}:{s:02d}.{ctx.rng.randint(0, 999):03d}", f"{h}h {m}m",
             f"{m}:{s:02d}", f"+{s}.{ctx.rng.randint(0, 999):03d}s")
        )
    )  # fmt: skip


@slot("DAYNAME")
def _dayname(ctx: Ctx, b: Builder) -> None:
    b.add(ctx.rng.choice(_DAYS))


@slot("SETS")
def _sets(ctx: Ctx, b: Builder) -> None:
    """Tennis sets, winner first: "6-4, 7-5", "6-4, 3-6, 7-6 (7-4)"."""
    n = ctx.rng.choice((2, 2, 3, 3, 4, 5))
    wins = ("6-4", "6-3", "7-5", "6-2", "6-1", "7-6 (7-4)", "7-6 (10-8)", "6-0")
    losses = ("4-6", "3-6", "5-7", "6-7 (5-7)", "2-6")
    out = [ctx.rng.choice(wins if i == n - 1 or chance(ctx, 0.6) else losses) for i in range(n)]
    b.add(", ".join(out))


@slot("VSETS")
def _vsets(ctx: Ctx, b: Builder) -> None:
    b.add(", ".join(f"25-{ctx.rng.randint(12, 23)}" for _ in range(3)))


@slot("WL")
def _win_loss(ctx: Ctx, b: Builder) -> None:
    """A win-loss record: "12-06", "45-37", "10-2-1"."""
    w, lo = ctx.rng.randint(0, 60), ctx.rng.randint(0, 40)
    b.add(ctx.rng.choice((f"{w}-{lo:02d}", f"{w}-{lo}", f"{w}-{lo}-{ctx.rng.randint(0, 5)}")))


@slot("MINUTE")
def _minute(ctx: Ctx, b: Builder) -> None:
    m = ctx.rng.randint(1, 90)
    b.add(f"{m}'" if chance(ctx, 0.8) else f"90+{ctx.rng.randint(1, 6)}'")


@slot("ODDS")
def _odds(ctx: Ctx, b: Builder) -> None:
    b.add(ctx.rng.choice(("5/2", "11/4", "evens", "2/1", "7/4", "10/11", "3.40", "1.85", "+150", "-110")))


@slot("ZHSCORE")
def _zh_score(ctx: Ctx, b: Builder) -> None:
    b.add(f"{ctx.rng.randint(1, 6)}比{ctx.rng.randint(0, 5)}")


@slot("MODELYEAR")
def _model_year(ctx: Ctx, b: Builder) -> None:
    """A car's model year: an attribute of a thing, not a date, left unlabelled."""
    b.add(str(ctx.rng.randint(2004, 2024)))


@slot("MILEAGE")
def _mileage(ctx: Ctx, b: Builder) -> None:
    n = ctx.rng.randint(5, 160)
    b.add(ctx.rng.choice((f"{n},000 miles", f"{n} 000 km", f"{n}k miles", f"{n}.000 km")))


@slot("CAR")
def _car(ctx: Ctx, b: Builder) -> None:
    b.add(ctx.rng.choice(_CAR_MODELS))


@slot("CARBODY")
def _car_body(ctx: Ctx, b: Builder) -> None:
    b.add(ctx.rng.choice(_CAR_BODIES))


@slot("HASHTAG")
def _hashtag(ctx: Ctx, b: Builder) -> None:
    b.add(ctx.rng.choice(_HASHTAGS))


@slot("TCO")
def _tco(ctx: Ctx, b: Builder) -> None:
    """A shortened link as tweets carry them: a URL like any other (labelled URL)."""
    b.add("https://t.co/" + "".join(ctx.rng.choice(_ALNUM) for _ in range(10)), "URL")


@slot("APPNO")
def _app_no(ctx: Ctx, b: Builder) -> None:
    """A case or application number ("12345/06"): names a case, not a person; unlabelled."""
    b.add(f"{ctx.rng.randint(100, 99999)}/{ctx.rng.randint(0, 24):02d}")


@slot("ARTICLE")
def _article(ctx: Ctx, b: Builder) -> None:
    b.add(ctx.rng.choice(("6 § 1", "8", "10", "13", "14", "5 § 3", "3", "6 §§ 1 et 3", "2")))


@slot("ROMAN")
def _roman(ctx: Ctx, b: Builder) -> None:
    b.add(ctx.rng.choice(("I", "II", "III", "IV", "V", "VI", "IX", "XII")))


# ------------------------------------------------------------------------------------ chat filler

ACKS: dict[str, tuple[str, ...]] = {
    "en": items(
        "Sure | OK | Ok | ok | ok cool | Okay | Thanks! | thanks | Thank you! | lol | LOL | haha | yeah | "
        "Yes | yep | No | nope | np | k | kk | sounds good | Got it. | 👍 | will do | no worries | "
        "sure thing | "
        "ty | thx! | cool cool | Perfect. | Great, thanks! | Hmm. | wait what | brb | omg | idk | true | "
        "fair enough | +1 | same | nvm | lmao | Noted. | Alright | Right. | Sure, go ahead. | Yes please | "
        "no thanks | hi | Hello? | ?? | ... | like to | I'd like to | would like to | Makes sense. | "
        "Got it, thanks! | Cheers | 🙏 | 😂 | :) | ok!! | Sure thing! | OK, thanks | yes | no | ok ok | "
        "Thanks a lot | Thank u | gotcha | yup | Absolutely. | Of course. | Not sure | maybe | done"
    ),
    "de": items("Danke! | Alles klar | ok passt | Gerne | Super, danke | jo | Ja | Nein | Genau. | Bis dann"),
    "fr": items(
        "Merci ! | D'accord | ok ça marche | mdr | Parfait | Oui | Non | Carrément | Bonne journée !"
    ),
    "es": items("Vale | ¡Gracias! | ok perfecto | jaja | Claro | Sí | No | De acuerdo | ¡Genial!"),
    "it": items("Grazie! | Va bene | ok perfetto | ahah | Certo | Sì | No | D'accordo | Perfetto"),
    "ja": items(
        "了解です | ありがとうございます！ | はい | OK | わかりました | 草 | 笑 | よろしくお願いします"
        " | 大丈夫です"
    ),
    "zh": items("好的 | 谢谢！ | 收到 | 哈哈哈 | 没问题 | 嗯嗯 | OK | 好的好的 | 明白了 | 辛苦了"),
}


@slot("ACK")
def _ack(ctx: Ctx, b: Builder) -> None:
    """An acknowledgement or filler in the record's language (English a third of the time)."""
    lang = ctx.locale[:2]
    pool = ACKS[lang] if lang in ACKS and chance(ctx, 0.67) else ACKS["en"]
    b.add(ctx.rng.choice(pool))


ACK_FRAMES: tuple[str, ...] = (
    "{ACK}",
    "{ACK}",
    "{ACK} {ACK}",
    "{ACK}, (thanks|ty|thx)[!]",
    "(Thanks|Cheers|Ok|Sure|Thank you), {P}!",
    "{ACK} - I'd like to (book|try|see|order) (that|one|two)",
    "(I'd|I would|we'd) like to (know|ask|check) (more|first|the price)",
    "like to (know|hear) more",
    "{ACK}\n{ACK}",
    "{ACK}! (See you|Talk) (soon|later|{WHEN})",
    "(ok|Ok|OK) cool, {COUNT} then",
    "(lol|haha) (same|true|yes), {P}",
)

# ------------------------------------------------------------------------------------------ frames

SPORTS: tuple[str, ...] = (
    "{TEAM} {SCORE} {TEAM}",
    "FT: {TEAM} {SCORE} {TEAM} ({PL} {MINUTE}, {PL} {MINUTE})",
    "(HT|Half-time|Full-time|FT|AET|Final): {SCORE}",
    "{PF} (won|beat {PF}) {SETS}[ in the (first round|quarter-final|semi-final|final)].",
    "(Seeded|Ranked) {SMALL}, {PL} (lost|went out) {SETS} to {PF}.",
    "(They|The team|We) (finished|went|are) {WL} (this season|on the road|at home).",
    "(a|an|A) {WL} record (at home|on the road|against the spread|this year)",
    "{TEAM} (improved|fell) to {WL} with the (win|loss).",
    "{PL} went {SMALL}-for-{SMALL} with {SMALL} RBIs[ and a homer].",
    "{TEAM} (won|lost) {SMALL}-{SMALL} (in overtime|on penalties|after extra time|in regulation).",
    "Final score: {TEAM} {SMALL}, {TEAM} {SMALL}",
    "{PL} ({TEAM}): {SMALL} pts, {SMALL} reb, {SMALL} ast",
    "Lap {SMALL}: {PL} leads by {STOPWATCH}.",
    "Result: (W|L) 3-(0|1|2) ({VSETS})",
    "{TEAM} are {SMALL} points (clear|behind) with {SMALL} games (left|to play).",
    "Kick-off (is at|at) {CLOCK}[, {DAYNAME}].",
    "(Odds|Prices): {ODDS} {TEAM}, {ODDS} the draw, {ODDS} {TEAM}",
    "(Top scorer|Leading scorer): {PF} ({SMALL} goals in {SMALL} games)",
    "Round {NUM}: {PL} (-{SMALL}|E|+{SMALL}), {PL} (-{SMALL}|E|+{SMALL})",
    "Match {SMALL} of {NUM} - (Group|Pool) (A|B|C|D) - {SCORE}",
    "{PF} (ran|clocked) {STOPWATCH} in the (100m|marathon|10k|1500m).",
    "(Arsenal|Chelsea|Leeds|Spurs) fans, {SCORE} at the break!",
    "{SCORE} (win|loss|draw) (tonight|on Saturday|away from home)[, {COUNT} in a row]",
)

AMOUNTS: tuple[str, ...] = (
    "Total: {PRICE} (incl. VAT|+ VAT|excl. shipping|inc. delivery)",
    "Subtotal {PRICE} | Tax {PRICE} | Total {PRICE}",
    "(Revenue|Net income|Operating profit) (rose|fell) to {BIGAMOUNT} in Q(1|2|3|4), (up|down) {PERCENT} "
    "year on year.",
    "{COUNT} (were|have been) (sold|built|listed|approved) (this quarter|last month|so far), "
    "(up|down) {PERCENT}.",
    "Rent: {PRICE}/month, deposit {PRICE}[, bills included].",
    "(Buy|Get) {NUM} for {PRICE}[ - (today only|while stocks last)].",
    "(Save|Up to) {PERCENT} off (everything|selected lines)[, min. spend {PRICE}].",
    "We need {COUNT} and {COUNT} by (Friday|the end of the month).",
    "(Ref|Code|Batch|Lot) {COUNT}",
    "Serves {SMALL}. Prep {SMALL} min. Cook {NUM} min.",
    "(Population|Attendance|Capacity|Circulation): {THOUSANDS}",
    "(Item|Line|Step|Question) {PAD} of {NUM}",
    "{COUNT}, {COUNT} and {COUNT}.",
    "(Only|Just) {COUNT} left[ in stock].",
    "(The|A) (budget|bill|quote) came to {BIGAMOUNT}[, about {PRICE} per head].",
    "Score: {NUM}/{NUM} ({PERCENT})",
    "(It|That) (costs|cost) {PRICE}, or {PRICE} with (the discount|delivery).",
    "{NUM} (houses|homes|flats) on the (street|estate) (sold|went) for (over|under) {BIGAMOUNT}.",
    "(Shares|Units) (closed|opened) at {PRICE}, (up|down) {PERCENT}.",
)

TIMES: tuple[str, ...] = (
    "(Opening hours|Open|Hours): Mon–Fri {HOURS}, Sat {HOURS}[, Sun closed]",
    "The (webinar|match|call|stream) (starts|begins) at {CLOCK} (CET|GMT|ET|PT|JST|UTC).",
    "Doors open {CLOCK}, (show|first act) at {CLOCK}.",
    "(Deadline|Due|Closing date): {DATE}[ at {CLOCK}]",
    "(Posted|Updated|Last edited) {DATETIME}",
    "(Timer|Elapsed|Duration): {STOPWATCH}",
    "ETA {SMALL} min[, arriving {CLOCK}]",
    "(Sunrise|Sunset|High tide|Low tide) {CLOCK}",
    "Every (Monday|Tuesday|weekday|other Friday) at {CLOCK}[ sharp].",
    "(Shift|Slot|Session) {SMALL}: {HOURS}",
    "(Train|Bus|Ferry) {NUM} (departs|leaves) at {CLOCK} from (platform|stop|gate) {SMALL}.",
    "(Q|H)(1|2|3|4) (results|targets) are due (on|by) {DATE}.",
    "(It's|It is) {CLOCK} here, (what|when) is it there?",
    "(Reminder|Note): the clocks go (back|forward) (one hour|an hour) {WHEN}.",
    "{DAYNAME} {CLOCK}-{CLOCK}: (yoga|choir|five-a-side|band practice)",
    "(See you|Meet) at {CLOCK} (by the entrance|at the station|outside)?",
)

SOCIAL: tuple[str, ...] = (
    "RT {HANDLE}: {SOC}",
    "{SOC} {HASHTAG} {HASHTAG}[ {TCO}]",
    "@USER @USER (lol|same|this|facts|so true) HTTPURL",
    "{TEAM} {SCORE} {TEAM} ⚽ {HASHTAG}[ {TCO}]",
    "(New|new) (blog post|video|episode) (is up|out now)! {TCO}",
    "Giveaway 🎁 RT + follow to win! Ends {WHEN}. #giveaway #ad",
    "{NUM}k followers!! (thank u|thank you) all 💕",
    "(ratio|W|L|mid|based|this 💯|no cap)",
    "(y'all|yall) (rt|retweet|share) this (pls|please) 🙏",
    "(so|soooo|sooo) (hyped|tired|done) (for|with) (tonight|the game|mondays) (🔥🔥|😭|💀)",
    "(Just|just) (landed|arrived) in {CITY} ✈️ {HASHTAG}",
    "{HANDLE} (lol|omg|haha) (same|ikr|this)",
    "Thread 🧵 (1/{NUM})",
    "(#1|No. 1) (on the charts|trending) (again|today) 🎉",
    "(Follow|follow) {HANDLE} for more (tips|content)! {HASHTAG}",
    "{SOC} 😂😂",
    "RT @USER: {SOC} HTTPURL",
)

_SOC: tuple[str, ...] = (
    "can't believe it's already (Friday|December|the weekend)",
    "this (game|album|show|episode) is (insane|so good|a mess)",
    "who else is watching (tonight|this|the final)?",
    "(coffee|pizza|sleep) first, (then|and) everything else",
    "(best|worst) day ever",
    "not me crying at {WORK} again",
    "(10|ten)/10 would recommend",
    "{SCORE} and we're (through|out)!!",
    "(monday|mondays) again 🙃",
    "(omg|OMG) {COUNT} (in one day|already)",
)


@slot("SOC")
def _soc(ctx: Ctx, b: Builder) -> None:
    render(pick(ctx, _SOC), ctx, b)


LEGAL: dict[str, tuple[str, ...]] = {
    "en": (
        "The applicant complained under Article {ARTICLE} of the Convention that the proceedings "
        "(had been unfair|had lasted too long).",
        "The Registrar (notified|informed) the parties (on|of the decision on) {DATE}.",
        "THE COURT, UNANIMOUSLY, (declares the application admissible|holds that there has been a "
        "violation of Article {ARTICLE}).",
        "The Government contested that argument.",
        "The claimant seeks damages of {PRICE} plus costs.",
        "Application no. {APPNO}",
        "The applicant, (Mr|Ms) {PF}, was born in {YEAR} and lives in {CITY}.",
        "The respondent (denies|admits) the allegations in paragraphs {NUM} to {NUM}.",
        "Costs are awarded to the (defendant|claimant) in the sum of {PRICE}.",
        "The Chamber (decided|held) that there was no need to examine the complaint separately.",
    ),
    "fr": (
        "Les requérants (allèguent|soutiennent) que (la procédure|leur détention) a méconnu l'article "
        "{ARTICLE} de la Convention.",
        "Le greffier a (informé|avisé) les parties (le {DATE}|par une lettre du {DATE}).",
        "La Cour (rappelle|observe|note) que le Gouvernement n'a (fourni|produit) aucun (élément|argument) "
        "(convaincant|pertinent).",
        "Par ces motifs, la Cour, à l'unanimité, (déclare la requête recevable|dit qu'il y a eu violation "
        "de l'article {ARTICLE}).",
        "Le tribunal de grande instance de {CITY} a rejeté la demande le {DATE}.",
        "Les parties ont déposé des observations écrites sur le fond.",
        "Le requérant, M. {PF}, est né en {YEAR} et réside à {CITY}.",
        "Requête n° {APPNO}",
        "Fait en français, puis communiqué par écrit le {DATE}.",
        "Le Gouvernement conteste cette thèse.",
        "Les requérants réclament {PRICE} au titre du préjudice moral.",
        "La Cour estime qu'il n'y a pas lieu d'examiner séparément le grief.",
        "Les requérants sont représentés par Me {PF}, avocat à {CITY}.",
        "La chambre de l'instruction a confirmé l'ordonnance le {DATE}.",
        "Le Gouvernement n'a pas soulevé d'exception d'irrecevabilité.",
    ),
    "es": (
        "El demandante (alega|sostiene) que la resolución (vulnera|infringe) el artículo {NUM} de la "
        "Constitución.",
        "La Sala (estima|desestima) el recurso de (casación|apelación) n.º {APPNO}.",
        "(Vistos|Visto) los autos, la Sala (acuerda|resuelve) lo siguiente.",
        "El Ministerio Fiscal (se opuso al recurso|interesó la desestimación del recurso).",
        "La Audiencia Provincial de {CITY} dictó sentencia el {DATE}.",
        "Se imponen las costas a la parte (demandante|recurrente).",
        "(FUNDAMENTOS DE DERECHO|ANTECEDENTES DE HECHO|FALLO)",
        "El demandado, D. {PF}, (no compareció|fue declarado en rebeldía).",
        "El demandante reclama la cantidad de {PRICE} más intereses.",
        "La Sala considera que el motivo debe ser desestimado.",
    ),
    "de": (
        "Der Kläger (begehrt|verlangt) Schadensersatz in Höhe von {PRICE}.",
        "Das Gericht hat (am {DATE}|durch Urteil vom {DATE}) (entschieden|die Klage abgewiesen).",
        "Die Klage ist (zulässig, aber unbegründet|unzulässig).",
        "Die Kosten des Rechtsstreits trägt (der Beklagte|die Klägerin).",
        "Der Anspruch ergibt sich aus § {NUM} Abs. {NUM} (BGB|ZPO).",
        "(Tatbestand|Entscheidungsgründe|Im Namen des Volkes)",
        "Aktenzeichen: {NUM} (C|O|U) {APPNO}",
        "Die Berufung (wird zurückgewiesen|ist begründet).",
        "Der Beklagte, Herr {PF}, (bestreitet den Anspruch|erkennt den Anspruch an).",
        "Das Gericht folgt insoweit dem Sachverständigen.",
    ),
    "zh": (
        "原告要求被告支付{PRICE}。",
        "本院认为，原告的诉讼请求(不能成立|于法有据，予以支持)。",
        "案件受理费{NUM}元，由被告负担。",
        "原告{PF}诉被告{COMPANY}买卖合同纠纷一案，本院于{DATE}立案。",
        "判决如下：驳回原告的全部诉讼请求。",
        "被告辩称，其已履行全部付款义务。",
        "上述事实，有合同、发票及当事人陈述在案为证。",
        "如不服本判决，可在判决书送达之日起十五日内提起上诉。",
        "审判长{PF}",
        "本判决为终审判决。",
    ),
    "ja": (
        "原告は被告に対し{NUM}万円の支払を求めた。",
        "裁判所は請求を棄却した。",
        "主文　本件控訴を棄却する。",
        "訴訟費用は被告の負担とする。",
        "原告{PF}は{DATE}に訴えを提起した。",
    ),
}

HEADLINES: tuple[str, ...] = (
    "(Stocks|Markets|Shares) (tumble|rally|slide|surge) as (rates|inflation|oil prices) (rise|fall|bite)",
    "{TEAM} (stun|sink|edge|thrash) {TEAM} {SCORE}",
    "(Breaking|Update|Exclusive): (polls|roads|schools) (close|reopen) (early|after {DURATION})",
    "{PL} (signs for|joins|leaves|quits) {TEAM}",
    "(Weather|Flood|Storm|Heat) warning for {REGION}",
    "{NUM} (homes|jobs|flights) (lost|cut|cancelled) (in|after) (storm|strike|merger)",
    "(House|Fuel|Food) prices (up|down) {PERCENT}",
    "(Sale|Clearance|Summer sale) now on - up to {PERCENT} off",
    "(Terms and conditions|Notice of meeting|Chapter {NUM}|Part {ROMAN}|Table of contents|Annual report)",
    "(Record|Historic) (turnout|heat|crowd) as {COUNT} (gather|queue) in {CITY}",
    "{COMPANY} (profits|shares) (soar|slump) {PERCENT}",
    "(Police|Council|Court) (says|confirms|rules) {BIGAMOUNT} (missing|spent|owed)",
)

LISTINGS: tuple[str, ...] = (
    "For sale: {MODELYEAR} {CAR} {CARBODY}, {MILEAGE}, (Manual|Automatic), (Petrol|Diesel|Hybrid|Electric). "
    "{PRICE} (ono|OBO|or nearest offer).",
    "Body type: {CARBODY}\nFuel: (Petrol|Diesel|Hybrid|Electric)\nTransmission: (Manual|Automatic)\n"
    "Doors: (3|4|5)\nColour: (Silver|Black|Red|Blue|White)",
    "(Looking for|Need) a (used|cheap|reliable) {CARBODY} under {PRICE}, any (tips|suggestions)?",
    "(Compact|Family|Small) {CARBODY} vs {CARBODY}: which is (cheaper to run|safer|better for towing)?",
    "(Garden Shed|Dining Table|Sofa Bed|Bicycle|Washing Machine) For Sale - (Good|Excellent|Fair) "
    "Condition, {PRICE}",
    "Lost Cat - (Tabby|Black And White|Ginger), (Answers To Nothing|Very Friendly), Reward {PRICE}",
    "(Free Parking|Free Wi-Fi|Breakfast Included|Pet Friendly) | (Sea View|Air Conditioning|Balcony) | "
    "(Double Room|Twin Room|Family Suite)",
    "Menu: (Soup Of The Day|Garden Salad), (Fish And Chips|Roast Chicken|Vegetable Lasagne), "
    "(Apple Crumble|Cheesecake) - {PRICE}",
    "{CARBODY}, (Low Mileage|Full Service History|One Owner), (Sat Nav|Heated Seats|Parking Sensors)",
    "Wanted: (Double Room|Parking Space|Garage) (In|Near) (Town Centre|The Station), (Budget|Max) {PRICE}",
    "The {CAR} {CARBODY} (is|was) (discontinued|facelifted) (this year|in Europe).",
    "{MODELYEAR} {CAR}, {MILEAGE}, {PRICE}",
)

# Frames in the record's own language, by kind; Japanese and Chinese frames put no space around values.
LOCAL: dict[str, dict[str, tuple[str, ...]]] = {
    "zh": {
        "sports": (
            "比赛结果：{TEAM} {SCORE} {TEAM}",
            "{TEAM}以{ZHSCORE}战胜{TEAM}。",
            "{PF}以{SETS}赢得比赛。",
            "本赛季战绩{WL}。",
            "{PF}本场拿下{SMALL}分{SMALL}个篮板。",
        ),
        "amounts": (
            "总价：{PRICE}，满{NUM}减{NUM}。",
            "共{NUM}套房子，每套约{NUM}平方米。",
            "销量同比增长{PERCENT}。",
            "库存还剩{NUM}件。",
            "第{NUM}章第{NUM}页",
            "编号{PAD}{PAD}，数量{NUM}。",
        ),
        "times": (
            "会议改到{CLOCK}。",
            "营业时间：{HOURS}",
            "{CLOCK}开始，请准时到。",
            "今天气温{NUM}度。",
            "截止日期：{DATE}",
        ),
        "ack": ("{ACK}", "{ACK}，{ACK}", "{ACK}！", "{ACK}，谢谢{PF}！"),
    },
    "ja": {
        "sports": (
            "試合結果：{TEAM} {SCORE} {TEAM}",
            "{TEAM}が{SCORE}で勝利。",
            "今季の成績は{WL}。",
            "{PF}選手が{SMALL}得点を挙げた。",
        ),
        "amounts": (
            "価格は{PRICE}です。",
            "全{NUM}件中{NUM}件を表示",
            "売上は前年比{PERCENT}増。",
            "在庫は残り{NUM}個です。",
            "{NUM}戸の住宅が完成した。",
        ),
        "times": (
            "会議は{CLOCK}からです。",
            "営業時間：{HOURS}",
            "気温は{NUM}度でした。",
            "締切：{DATE}",
            "開始は{CLOCK}です。",
            "{CLOCK}に駅前で集合です。",
            "営業時間は{HOURS}です。",
            "次の電車は{CLOCK}発です。",
            "所要時間は約{STOPWATCH}です。",
        ),
        "ack": ("{ACK}", "{ACK}、{ACK}", "{ACK}！", "{PF}さん、{ACK}"),
    },
    "de": {"ack": ("{ACK}", "{ACK}, {ACK}", "{ACK}, {P}!")},
    "fr": {"ack": ("{ACK}", "{ACK}, {ACK}", "{ACK}, {P} !")},
    "es": {"ack": ("{ACK}", "{ACK}, {ACK}", "¡{ACK}, {P}!")},
    "it": {"ack": ("{ACK}", "{ACK}, {ACK}", "{ACK}, {P}!")},
}
for _lang, _frames in LEGAL.items():
    if _lang != "en":
        LOCAL.setdefault(_lang, {})["legal"] = _frames

_EN: dict[str, tuple[str, ...]] = {
    "sports": SPORTS,
    "amounts": AMOUNTS,
    "times": TIMES,
    "ack": ACK_FRAMES,
    "social": SOCIAL,
    "legal": LEGAL["en"],
    "headline": HEADLINES,
    "listing": LISTINGS,
}

# ------------------------------------------------------------------------------------------ tables


def _cells_date(ctx: Ctx) -> list[tuple[str, str | None]]:
    return [
        (str(ctx.rng.randint(1990, 2025)), None),
        (f"{ctx.rng.randint(1, 12):02d}", None),
        (f"{ctx.rng.randint(1, 28):02d}", None),
        (f"{ctx.rng.uniform(0, 100):.1f}", None),
    ]


def _cells_league(ctx: Ctx) -> list[tuple[str, str | None]]:
    w, d, lo = ctx.rng.randint(0, 28), ctx.rng.randint(0, 12), ctx.rng.randint(0, 20)
    team = ctx.rng.choice(lx.TEAMS).removeprefix("the ")
    gd = ctx.rng.randint(-40, 50)
    return [
        (str(ctx.rng.randint(1, 20)), None),
        (team, "ORGANIZATION"),
        (str(w + d + lo), None),
        (str(w), None),
        (str(d), None),
        (str(lo), None),
        (f"{gd:+d}" if gd else "0", None),
        (str(3 * w + d), None),
    ]


def _cells_player(ctx: Ctx) -> list[tuple[str, str | None]]:
    n = new_name(ctx)
    name = n.last if chance(ctx, 0.4) else full(ctx, n)
    return [(name, "PERSON")] + [(str(ctx.rng.randint(0, x)), None) for x in (48, 45, 18, 14)]


def _cells_sales(ctx: Ctx) -> list[tuple[str, str | None]]:
    seg = ctx.rng.choice(("North", "South", "East", "West", "EMEA", "APAC", "Online", "Retail", "Wholesale"))
    return [(seg, None)] + [(f"{ctx.rng.randint(100, 99999):,}", None) for _ in range(4)]


def _cells_items(ctx: Ctx) -> list[tuple[str, str | None]]:
    item = ctx.rng.choice(
        ("Widget", "Cable", "Bracket", "Hatchback mat", "Sedan cover", "Bolt M6", "Paper A4")
    )
    q, p = ctx.rng.randint(1, 500), ctx.rng.randint(1, 9999) / 100
    return [(item, None), (str(q), None), (f"{p:.2f}", None), (f"{q * p:,.2f}", None)]


def _cells_train(ctx: Ctx) -> list[tuple[str, str | None]]:
    h, m = ctx.rng.randint(5, 22), ctx.rng.randint(0, 59)
    dur = ctx.rng.randint(20, 200)
    arr = (h * 60 + m + dur) % 1440
    return [
        (ctx.rng.choice(("IC", "ICE", "RE", "TGV", "AVE", "S")) + f" {ctx.rng.randint(1, 2999)}", None),
        (f"{h:02d}:{m:02d}", None),
        (f"{arr // 60:02d}:{arr % 60:02d}", None),
        (str(ctx.rng.randint(1, 20)) + ctx.rng.choice(("", "", "a", "b")), None),
    ]


def _cells_stats(ctx: Ctx) -> list[tuple[str, str | None]]:
    p = ctx.rng.choice(("<0.001", f"0.{ctx.rng.randint(1, 999):03d}", "n.s."))
    return [
        (f"{ctx.rng.randint(1, 40):02d}", None),
        (str(ctx.rng.randint(5, 900)), None),
        (f"{ctx.rng.uniform(0, 80):.2f}", None),
        (f"{ctx.rng.uniform(0, 9):.2f}", None),
        (p, None),
    ]


_TABLES: dict[str, tuple[tuple[str, ...], Callable[[Ctx], list[tuple[str, str | None]]]]] = {
    "date-values": (("Year", "Month", "Day", "Value"), _cells_date),
    "league": (("Pos", "Team", "P", "W", "D", "L", "GD", "Pts"), _cells_league),
    "box-score": (("Player", "Min", "Pts", "Reb", "Ast"), _cells_player),
    "sales": (("Region", "Q1", "Q2", "Q3", "Q4"), _cells_sales),
    "invoice-lines": (("Item", "Qty", "Unit price", "Total"), _cells_items),
    "timetable": (("Train", "Dep", "Arr", "Platform"), _cells_train),
    "stats": (("ID", "n", "Mean", "SD", "p"), _cells_stats),
}
_TABLE_KEYS: tuple[str, ...] = tuple(_TABLES)
_DATE_HEADERS: dict[str, tuple[str, ...]] = {
    "de": ("Jahr", "Monat", "Tag", "Wert"),
    "fr": ("Année", "Mois", "Jour", "Valeur"),
    "es": ("Año", "Mes", "Día", "Valor"),
    "it": ("Anno", "Mese", "Giorno", "Valore"),
    "ja": ("年", "月", "日", "値"),
    "zh": ("年份", "月份", "日", "数值"),
}


def write_table(ctx: Ctx, b: Builder, kind: str, rows: int) -> None:
    """A table of ``kind`` with ``rows`` rows: Markdown, pipes, tabs, CSV or aligned columns."""
    header, cells = _TABLES[kind]
    if kind == "date-values":
        header = _DATE_HEADERS.get(ctx.locale[:2], header) if chance(ctx, 0.5) else header
    styles = (
        ("md", "md", "pipe", "tsv", "csv")
        if ctx.locale[:2] in ("ja", "zh")
        else ("md", "md", "pipe", "tsv", "csv", "space")
    )
    style = ctx.rng.choice(styles)
    sep = {"md": " | ", "pipe": " | ", "tsv": "\t", "csv": ",", "space": "   "}[style]

    def line(row: list[tuple[str, str | None]]) -> None:
        b.add("| " if style == "md" else "")
        for j, (text, label) in enumerate(row):
            if j:
                b.add(sep)
            if style == "csv" and label is None and "," in text:
                text = f'"{text}"'
            b.add(text, label)
        b.add(" |" if style == "md" else "")

    lines = 0
    if chance(ctx, 0.75):
        line([(h, None) for h in header])
        lines += 1
        if style == "md":
            b.add("\n|" + "|".join("---" for _ in header) + "|")
    for _ in range(rows):
        if lines:
            b.add("\n")
        line(cells(ctx))
        lines += 1


@slot("TABLEROW")
def _table_row(ctx: Ctx, b: Builder) -> None:
    """One Markdown row of numbers: "| 2019 | 12 | 06 | 34.5 |"."""
    b.add("| " + " | ".join(text for text, _ in _cells_date(ctx)) + " |")


# --------------------------------------------------------------------------------------- treebank

_PTB_RULES: tuple[tuple[re.Pattern[str], str], ...] = (
    (re.compile(r'^"|(?<=[\s(\[{<])"'), " `` "),
    (re.compile(r'"'), " '' "),
    (re.compile("“"), " `` "),
    (re.compile("”"), " '' "),
    (re.compile(r"\.\.\.|…"), " ... "),
    (re.compile(r"[;!?$%&]"), r" \g<0> "),
    (re.compile(r"(?<!\d),|,(?!\d)"), " , "),
    (re.compile(r"(?<!\d):|:(?!\d)"), " : "),
    (re.compile(r"(?<=[a-z0-9)\]]{2})\.(?=['\"”’)\]]*(?:\s|$))"), " . "),
    (re.compile(r"\("), " -LRB- "),
    (re.compile(r"\)"), " -RRB- "),
    (re.compile(r"\["), " -LSB- "),
    (re.compile(r"\]"), " -RSB- "),
    (re.compile(r"\{"), " -LCB- "),
    (re.compile(r"\}"), " -RCB- "),
    (re.compile(r"(?i)\b(can)(not)\b"), r"\1 \2"),
    (re.compile(r"(?i)(\w)(n['’]t)\b"), r"\1 \2"),
    (re.compile(r"(?i)(\w|^)(['’](?:s|re|ve|ll|d|m))\b"), r"\1 \2"),
    (re.compile(r"[ \t]+"), " "),
    (re.compile(r" ?\n ?"), "\n"),
)
# Span values keep their form, except names of organisations, places and addresses ("McDonald 's").
_PTB_INSIDE = frozenset(("ORGANIZATION", "LOCATION", "ADDRESS"))


def ptb(s: str) -> str:
    """``s`` tokenised the Penn Treebank way: "do n't", "I 'm", "-LRB-", "`` quoted ''", "end ."."""
    for pat, rep in _PTB_RULES:
        s = pat.sub(rep, s)
    return s


def _ptb_piece(s: str, label: str | None) -> str:
    return ptb(s) if label is None or label in _PTB_INSIDE else s


def _ptb_glue(left: str, right: str) -> str:
    return "" if left.isspace() or right.isspace() or (left.isalnum() and right.isalnum()) else " "


def treebank(b: Builder) -> None:
    """Rewrite the whole record in treebank tokens; spans stay on their values."""
    rewrite(b, _ptb_piece, _ptb_glue)


# ------------------------------------------------------------------------------------------ shape


def _fid(kind: str, template: str) -> str:
    return f"hardneg-{kind}:{stable_hash(template):08x}"


def _frames(ctx: Ctx, kind: str) -> tuple[str, str, tuple[str, ...]]:
    """(frame-id kind, language, frames): the record's language half the time when it has them."""
    lang = ctx.locale[:2]
    local = LOCAL.get(lang, {}).get(kind)
    if local and (kind == "legal" or chance(ctx, 0.5)):
        return f"{kind}-{lang}", lang, local
    return kind, "en", _EN[kind]


def _render_local(ctx: Ctx, b: Builder, lang: str, template: str) -> None:
    # The frame's language: names in a Chinese or Japanese frame are written in Han or kana script,
    # clock times and list joiners follow it.
    prev = ctx.memo.get("lang")
    if lang != "en":
        ctx.memo["lang"] = lang
    render(template, ctx, b)
    if prev is None:
        ctx.memo.pop("lang", None)
    else:
        ctx.memo["lang"] = prev


def _sentences(ctx: Ctx, b: Builder, kind: str, n: int) -> str:
    fkind, lang, frames = _frames(ctx, kind)
    sep = "" if lang in ("ja", "zh") else ctx.rng.choice((" ", "\n", "\n", " "))
    first = ""
    for i in range(n):
        if i:
            b.add(sep)
        t = pick(ctx, frames)
        _render_local(ctx, b, lang, t)
        first = first or _fid(fkind, t)
    return first


def _table(ctx: Ctx, b: Builder) -> str:
    kind = pick(ctx, _TABLE_KEYS)
    if chance(ctx, 0.3):
        b.add(ctx.rng.choice(("Table 2: ", "Results\n", "Figures (provisional)\n", "Source data:\n", "")))
    write_table(ctx, b, kind, ctx.rng.randint(2, 6))
    if chance(ctx, 0.15):
        b.add("\n" + ctx.rng.choice(("Source: company filings", "* provisional", "n/a = not available")))
    return f"hardneg-table:{kind}"


def _treebank_record(ctx: Ctx, b: Builder) -> str:
    pools = (prose.PLAIN, SPORTS, SINGLE, ACK_FRAMES, LEGAL["en"], AMOUNTS)
    first = ""
    for i in range(ctx.rng.choice((1, 1, 2, 3))):
        if i:
            b.add(" ")
        t = pick(ctx, ctx.rng.choice(pools))
        render(t, ctx, b)
        first = first or _fid("treebank", t)
    treebank(b)
    return first


def _headline(ctx: Ctx, b: Builder) -> str:
    b.case = "upper"
    t = pick(ctx, HEADLINES)
    render(t, ctx, b)
    b.case = None
    if chance(ctx, 0.4):
        b.add("\n")
        _sentences(ctx, b, ctx.rng.choice(("sports", "amounts", "times")), 1)
    return _fid("headline", t)


_KINDS: tuple[tuple[float, str], ...] = (
    (0.14, "table"),
    (0.28, "sports"),
    (0.40, "amounts"),
    (0.49, "times"),
    (0.59, "ack"),
    (0.71, "treebank"),
    (0.81, "social"),
    (0.90, "legal"),
    (0.95, "headline"),
    (1.00, "listing"),
)


def hard_negative(ctx: Ctx, b: Builder) -> str:
    """A record of mostly non-personal text in one of the shapes above."""
    r = ctx.rng.random()
    kind = next((k for cut, k in _KINDS if r < cut), "listing")
    if kind == "table":
        return _table(ctx, b)
    if kind == "treebank":
        return _treebank_record(ctx, b)
    if kind == "headline":
        return _headline(ctx, b)
    if kind == "social" and chance(ctx, 0.4):
        b.case = "lower"
    n = ctx.rng.choice((1, 1, 2, 3)) if kind != "ack" else ctx.rng.choice((1, 1, 1, 2, 3))
    name = _sentences(ctx, b, kind, n)
    if chance(ctx, 0.12) and ctx.locale[:2] not in ("ja", "zh"):
        b.add(" ")
        render(pick(ctx, prose.PLAIN), ctx, b)
    return name


_SNIPPET_KINDS = ("sports", "amounts", "times", "ack", "ack", "social", "listing", "legal", "row", "headline")


@slot("HARDNEG")
def _hardneg(ctx: Ctx, b: Builder) -> None:
    """One piece of hard-negative text, to mix into a record that carries personal data."""
    kind = ctx.rng.choice(_SNIPPET_KINDS)
    if kind == "row":
        _table_row(ctx, b)
    elif kind == "headline":
        case, b.case = b.case, "upper"
        render(pick(ctx, HEADLINES), ctx, b)
        b.case = case
    else:
        _, lang, frames = _frames(ctx, kind)
        _render_local(ctx, b, lang, pick(ctx, frames))

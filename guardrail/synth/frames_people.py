"""The ``people`` shape: names in lists, dialogue, bare first names and surnames, reviews and trivia.

Real text names people without a title or a "my name is": "They had 4 kids: Mia, Theo, Lena and
Jonas.", "Lisa: Remember me?", "Scott had given Belle his address", "the Kessler version of the
song". Each name is its own PERSON span (the possessive "'s" and titles outside it). Titles of
works, products, landmarks and eponyms ("Parkinson's disease") stay unlabelled, and bands and
companies are ORGANIZATION, in the same sentence shapes, so that the probe learns the difference.
"""

from __future__ import annotations

from guardrail.synth import people_slots, prose  # noqa: F401  (people_slots registers the slots)
from guardrail.synth.dialogue import dialogue
from guardrail.synth.engine import Builder, Ctx, chance, pick, render, stable_hash

LISTS: tuple[str, ...] = (
    "(They|We) (had|have) {LN} (kids|children|grandchildren|daughters|sons): {LFIRST}.",
    "Attendees: {LFULL}",
    "(Attendees|Participants|Invited):{BFULL}",
    "(Present|In attendance): {LFULL}. (Apologies|Regrets): {LFULL}.",
    "(invite|add|loop in|cc) {LFIRST}[ (to|on) the (thread|call|group chat)]",
    "(The|Its) (founders|co-founders) (were|are) {LLAST}.",
    "(Seating plan|Table {NUM}): {LMIX}",
    "Team (A|B|Blue|Red|Alpha): {LFIRST}",
    "(Shortlisted|Finalists|Winners)[ for the (award|role|prize)]: {LFULL}.",
    "(Bridesmaids|Groomsmen|Pallbearers|Godparents) (will be|are) {LFIRST}.",
    "(Rota|Cleaning rota|On call) (for|this) (week|weekend|month): {LFIRST}.",
    "(Authors|Contributors|Maintainers|Reviewers): {LFULL}",
    "(Signed|Witnessed|Approved) by {LFULL}.",
    "{LFIRST} (are|were) (coming|invited|on the guest list|already here).",
    "(Say hi|Hello|Thanks|Love) to {LFIRST}[!]",
    "{LFIRST} and I (went|are going|drove) to {CITY}[ {WHEN}].",
    "Guest list:{BMIX}",
    "(On the call|Joined|Dialled in): {LMIX}",
    "(The kids|The twins|Our girls|The boys), {LFIRST}, (are|were) (asleep|at camp|with their grandparents).",
    "(Pictured|Photo|From left): {LFULL}.",
    "(To|Cc|Bcc): {LFULL}",
    "(Players|Line-up|Starting five): {LLAST}",
    "(Judges|Referees|Examiners|Panel): {LFULL}",
    "(Mum|Mom), {LFIRST} (say|send) hi!",
    "Action items: {P} - (send the deck|book the room); {P} - (review the budget|call the venue)"
    "[; {P} - (take notes|chase the invoice)]",
    "Rooms: 101 - {P}, 102 - {PF}, 103 - {PL}",
    "Who's (bringing|doing) what: {P} (salad|drinks), {P} (dessert|bread), {P} (plates|music).",
    "(Votes|Raised hands): {LFIRST} (in favour|yes); {LFIRST} (against|no).",
    "(the|our) (neighbours|cousins|flatmates) {LFIRST} (moved out|are visiting|got a dog)",
    "(Emergency contacts|Next of kin): {LFULL}",
    "(Thanks to|Special thanks to) {LFULL} for (the photos|all the help|organising).",
    "(Class|Group) {NUM}:{BFIRST}",
    "Interview schedule: 9:00 {PF}, 10:30 {PF}, 14:00 {PF}",
    "(my|our) (grandkids|nieces and nephews) ({LN}): {LFIRST}",
    "(The|Our) (partners|committee|board) (are|is) {LMIX}.",
)

SINGLE: tuple[str, ...] = (
    "{PA} had given {PB} (his|her|their) (address|number|spare key)[ before (leaving|the trip)].",
    "{PA} (called|texted|emailed) me (yesterday|this morning|{WHEN})[ about the (flat|party|car)].",
    "(Ask|Ping|Email|Check with) {PL} and {PL} (about|for) the (budget|slides|numbers).",
    "{POSS} (daughter|son|laptop|sister|car|dog) (is|was) (sick|broken|in hospital|missing)[ again].",
    "I (met|saw) {PA} (at|outside) the (gym|school gate|station)[ {WHEN}]; {PA} (looked|seemed) "
    "(tired|great|happy).",
    "{PA} and I (went|drove) to {CITY} (for the weekend|{WHEN}).",
    "{PA} (says|said|thinks) {PB} (is|was) (right|wrong|lying|joking).",
    "(Can|Could) you (pick up|collect) {PA} from (school|practice|the airport)[ {WHEN}]?",
    "Without {PA}, (we|I) (would never have|couldn't have) (finished|made it).",
    "{PX} (scored|saved|missed) (twice|a penalty|in the second half), and {PX} knows it.",
    "(According to|Per) {PL}, the (meeting|deadline) (moved|is) {WHEN}.",
    "It was {PA} who (found|fixed|broke) the (bug|printer|vase).",
    "(My|Our) (neighbour|boss|landlord|teacher|coach) {PA} (lent|gave|sent) (me|us) {PRICE}.",
    "(Happy birthday|Belated birthday wishes|Congratulations) to {PA}!",
    "(Sent|Forwarded) it to {PA}[ and {PB}].",
    "{PAPOSS} and {PBPOSS} (kids|parents|dogs) (get along|are friends|hate each other).",
    "{PF} (was|is) (my|our) (roommate|manager|best man) (in|at) (college|{UNI}|{COMPANY}).",
    "Did you hear (what|that) {PA} (said|did)?",
    "{PA} (texted|messaged): running late, (start|go ahead) without me.",
    "We (owe|still owe) {PA} (a dinner|{PRICE}|a favour).",
    "(Drop|Leave) the (keys|parcel) with {PL} (at|on) (reception|the front desk|the third floor).",
    "{PA} (will|can) (take|cover) (my|the) (shift|class) {WHEN}.",
    "The (photo|video) (shows|has) {PA} (with|next to) {PB} (at|in front of) {LANDMARK}.",
    "{PA} (lives|moved in) (next door|upstairs|across the road) with {PB}.",
    "(Hey|Hi|Yo) {PA}, (are you|u) (coming|free) {WHEN}?",
    "(Thanks|Thank you|Cheers)[ again], {PA}!",
    "{PL}, (you're|you are) (up next|on in five).",
    "(Sorry|Apologies), {PA}, I (missed|didn't see) your (call|message).",
    '"{LINE}" (said|asked|whispered) {PA} to {PB}.',
    '{PA} (shouted|yelled|snapped) at {PB}: "{LINE}"',
    '"{LINE}" {PA} (asked|whispered|replied).',
    '{PA} (turned to|looked at) {PB} and said, "{LINE}"',
    "{PA} (told|asked) {PB} (to wait|whether it was true|to call back).",
    "(Is|Was) {PA} (the|your) (eldest|youngest|twin)?",
    "{PA} (is married to|is dating|split up with) {PF}.",
    "{PF} and {PF} (are getting married|announced their engagement|had a baby)[ {WHEN}].",
    "{PA}. (That's|That was) all (he|she) (said|wrote).",
    "{PA} (again|of all people)? (Seriously|Unbelievable).",
    "{PA} (and|&) {PB} from {COMPANY} (want|asked for) the (report|slides).",
    "{PX} (sent|posted) the (minutes|agenda); {PX} also (booked|cancelled) the room.",
    "(So|Anyway), {PA} (finally|never) (paid me back|showed up).",
    "I (think|guess) {POSS} (mum|dad) (knows|called) mine.",
    "(Our|The) (babysitter|tutor|cleaner|plumber), {PA}, (can't|cannot) come {WHEN}.",
    "{PL} (is|was) (off sick|on holiday|in a meeting); (ask|try) {PL} instead.",
    "{PAPOSS} (flat|office|laptop) is (a mess|on fire|brand new); {PA} (won't|doesn't) (admit|care).",
)

REVIEWS: tuple[str, ...] = (
    "The {PL} version of {WORK} (is|was) (better than the original|overproduced|my favourite).",
    "Unlike {PLPOSS} first (novel|album|film), {WORK} (drags in the middle|actually works|never lands).",
    "(A|The) cover of {WORK} by {PF} (is|was) (stunning|forgettable|the best one).",
    "This cover by {PF} (gives me chills|is underrated|deserves more views).",
    "{WORK} (was|is) (written|directed|produced) by {PF}[, not {PF}].",
    "(I|We) prefer {PLPOSS} (translation|recording|edition) to the (original|newer one).",
    "{PFPOSS} (latest|new|second) (book|record|play) (is|was) (a mess|brilliant|underrated).",
    "(Three|Two|Five|Four) stars. {PL} (tries|tried) too hard (with|in) the (ending|second half).",
    "(Fun fact|Trivia): {PF} (wrote|recorded) the demo in (a week|one take|{YEAR}).",
    "(Fans of|If you liked) {PL} (will love|might hate) this (one|book|record).",
    "(Narrated|Illustrated|Translated) by {PF}, (the audiobook|this edition) (is|feels) (warm|flat|perfect).",
    "{BAND}'s (version|cover) of {WORK} beats the {PL} one.",
    "The {PRODUCT} (review|unboxing) by {PF} (was|is) (spot on|clearly sponsored).",
    "(Saw|Heard) {PF} (play|read|speak) at {LANDMARK}[ {WHEN}].",
    "(Quiz|Pub quiz) round: (was it|name the artist -) {PF}, {PF} or {PF}?",
    "{PLPOSS} (essay|column|thread) (on|about) the {PRODUCT} (went viral|is worth reading).",
    "Honestly the (songs|poems) by {PF} (hit|land) harder than anything by {BAND}.",
    "(Starring|With) {PF} and {PF}, {WORK} (is|was) (a delight|forgettable).",
    "My (book club|class) (picked|chose) {PLPOSS} (memoir|debut) over {WORK}.",
    "Edited by {LFULL}.",
    "The (early|late) {PL} (paintings|albums|novels) are (the best|overrated).",
    "(Is|Was) {WORK} (really|originally) a {PL} (song|poem)? (I|We) always thought it was by {BAND}.",
    "(Read|Try) anything by {PF} (if you liked|after) {WORK}.",
    "{PF} (wrote|signed) the (foreword|liner notes) for the {YEAR} (reissue|edition).",
    "Not a fan of {PLPOSS} (style|voice), but the {PRODUCT} (ad|jingle) was catchy.",
    "(Best|Worst) (track|chapter): the one {PL} (wrote|sings) about (her|his) (father|hometown).",
)

# No private person: titles of works, products, landmarks, eponyms and common words that are also
# names ("Will", "June", "Mark") stay unlabelled; bands and companies are ORGANIZATION.
HARD: tuple[str, ...] = (
    "Setlist: {LWORK}.",
    "(Brands|Labels) (we|I) (stock|like): {LCOMPANY}.",
    "Bands on the (bill|lineup): {LBAND}.",
    "(We|I) (visited|saw) {LLANDMARK}[ {WHEN}].",
    "(Stops|Cities) on the tour: {LCITY}.",
    "{EPONYM} (came up|was covered) in (class|the lecture) {WHEN}.",
    "(Is|Was) {WORK} (based on a true story|the first film in the series)?",
    "The {PRODUCT} and the {PRODUCT} (are|were) (sold out|on sale) {WHEN}.",
    "Will the (report|build|parcel) be (ready|done|here) {WHEN}?",
    "Mark the (box|form|email) as (done|read|urgent).",
    "Bill (me|the client) for {NUM} hours.",
    "June (was|is) (hot|busy|wet) this year.",
    "Grace period ends {WHEN}.",
    "Hope (you're|all is) well!",
    "Sue (them|the company)? (Seriously|Not worth it).",
    "Rose (gardens|bushes) (are|look) (lovely|overrated) in (May|summer).",
    "Frank (feedback|discussion) (helps|is always welcome).",
    "(Reading list|Books this year): {LWORK}.",
    "(My|Our) favourite (songs|films): {LWORK} - all (classics|on repeat).",
    "(Comparing|Compare) {LPRODUCT} before I buy.",
    "{COMPANY} (was|is) named after its founder, (apparently|as it happens).",
    "The (exam|course) covers {LEPONYM}.",
    "(Ordered|Try) the eggs Benedict and an Earl Grey.",
    "(Victoria|Waterloo|Euston) station was (packed|empty) {WHEN}.",
    "Jack up the car before you (change|remove) the tyre.",
    "(Holly|Ivy|Heather|Daisy) (grows|spreads) (everywhere|fast) in this garden.",
    "Pat the (chicken|fish) dry before (frying|searing).",
    "Art class (starts|is cancelled) {WHEN}.",
)

LOCAL: dict[str, tuple[str, ...]] = {
    "de": (
        "Eingeladen sind {LFIRST}.",
        "{PA} hat {PB} gestern (angerufen|geschrieben).",
        "(Danke|Vielen Dank), {PA}!",
        "Anwesend: {LFULL}. Entschuldigt: {LFULL}.",
        "Das ist der Laptop von {PA}.",
        "{PA} und {PB} kommen (später|morgen|nicht).",
        "Die Gründer sind {LLAST}.",
    ),
    "fr": (
        "Étaient présents : {LFULL}.",
        "{PA} a donné son adresse à {PB}.",
        "Merci, {PA} !",
        "C'est le vélo de {PA}.",
        "(Invite|Ajoute) {LFIRST} au groupe.",
        "Ils ont {LN} enfants : {LFIRST}.",
        "Les fondateurs sont {LLAST}.",
    ),
    "es": (
        "Asistentes: {LFULL}.",
        "{PA} le dio su número a {PB}.",
        "¡Gracias, {PA}!",
        "Es el coche de {PA}.",
        "Tienen {LN} hijos: {LFIRST}.",
        "(Invita|Añade) a {LFIRST} al grupo.",
        "Mañana vienen {PA} y {PB}.",
        "Los fundadores son {LLAST}.",
        "La hija de {PA} está enferma.",
    ),
    "it": (
        "Presenti: {LFULL}.",
        "{PA} ha chiamato {PB} ieri.",
        "Grazie, {PA}!",
        "È la macchina di {PA}.",
        "Invita {LFIRST} alla cena.",
        "Hanno {LN} figli: {LFIRST}.",
        "Domani arrivano {PA} e {PB}.",
        "I fondatori sono {LLAST}.",
        "Ho visto {PA} con {PB} al mercato.",
    ),
    "ja": (
        "参加者：{LFIRST}",
        "{PA}さんが{PB}さんに電話しました。",
        "ありがとう、{PA}さん！",
        "{PX}さんのパソコンが壊れました。",
        "{LFIRST}が来ます。",
        "{PX}さんと{PA}さんは同じ会社です。",
        "{PX}さんの娘さんは病気です。",
    ),
    "zh": (
        "参加者：{LFULL}",
        "{PF}昨天给{PF}打了电话。",
        "谢谢你，{PA}！",
        "{PX}老师的电脑坏了。",
        "{LFULL}都会来。",
        "{PX}经理和{PF}在同一家公司。",
        "{PX}女士的女儿生病了。",
        "明天{PF}和{PF}一起来。",
        "这是{PF}的车。",
    ),
}


def _fid(kind: str, template: str) -> str:
    return f"people-{kind}:{stable_hash(template):08x}"


def _filler(ctx: Ctx, b: Builder) -> None:
    """A sentence with no private person: plain prose or a hard negative."""
    r = ctx.rng.random()
    if r < 0.2:
        render("{HARDNEG}", ctx, b)  # tables, scores, amounts, filler (guardrail.synth.hardneg)
    else:
        render(pick(ctx, HARD if r < 0.56 else prose.PLAIN), ctx, b)


def _body(ctx: Ctx, b: Builder, kind: str, frames: tuple[str, ...]) -> str:
    """One to three sentences of ``frames`` mixed with PII-free prose and hard negatives."""
    sep = ctx.rng.choice((" ", " ", "\n", "\n\n"))
    if chance(ctx, 0.15):
        _filler(ctx, b)
        b.add(sep)
    first = ""
    for i in range(ctx.rng.choice((1, 1, 1, 2, 2, 3))):
        if i:
            b.add(sep)
        if i and chance(ctx, 0.35):
            _filler(ctx, b)
            continue
        t = pick(ctx, frames)
        render(t, ctx, b)
        first = first or _fid(kind, t)
    return first


_KINDS: tuple[tuple[float, str, tuple[str, ...]], ...] = (
    (0.26, "list", LISTS),
    (0.54, "single", SINGLE),
    (0.70, "review", REVIEWS),
)


def people(ctx: Ctx, b: Builder) -> str:
    """A record naming people the way ordinary text does (see the module docstring)."""
    lang = ctx.locale[:2]
    if chance(ctx, 0.06):
        b.case = "lower"
    r = ctx.rng.random()
    if lang in LOCAL and r < 0.1:
        ctx.memo["lang"] = lang
        return _body(ctx, b, lang, LOCAL[lang])
    r = ctx.rng.random()
    for cut, kind, frames in _KINDS:
        if r < cut:
            return _body(ctx, b, kind, frames)
    if r < 0.91:
        if chance(ctx, 0.15):
            _filler(ctx, b)
            b.add("\n")
        return f"people-dlg:{dialogue(ctx, b)}"
    first = ""
    for i in range(ctx.rng.choice((1, 2))):
        b.add(" " if i else "")
        t = pick(ctx, HARD)
        render(t, ctx, b)
        first = first or _fid("hard", t)
    return first

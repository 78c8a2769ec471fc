"""Structured shapes: tool-call JSON, log lines and filled-in forms.

JSON is written piece by piece: each value is rendered into its own builder, then escaped segment by
segment (text between spans, then each span), so span offsets point at the value as it appears in
the JSON text, escapes included, and the whole still parses with ``json.loads``.
"""

from __future__ import annotations

import json

from guardrail.synth import lexicon as lx
from guardrail.synth.engine import Builder, Ctx, chance, pick, render, stable_hash

# One tool call a line: "name: arg=template; arg=template". "#arg" marks a raw JSON number.
_TOOL_SPECS: tuple[str, ...] = (
    "send_email: to={EMAIL}; subject=[Re: ]order {ORDER}; body=Hi {FIRST}, {PROSE}",
    "send_sms: phone={PHONE}; message=Your code is {NUM}. (Do not share it.|Valid {DURATION}.)",
    "create_contact: name={NAME}; email={EMAIL}; phone={PHONE}; company={COMPANY}",
    "update_address: customer_id={IDVAL}; address={ADDRESS}",
    "book_table: restaurant={COMPANY}; name={NAME}; #party_size={NUM}; time={TIME}",
    "schedule_meeting: attendees={EMAIL}, {EMAIL}; date={DATE}; title=(Sync|Review) on {WORK}",
    "create_ticket: title={ERRCODE} on {CODEWORD}; reporter={USERNAME}; body={PROSE}",
    "charge_card: card_number={CARD}; #amount={NUM}; currency=(EUR|USD|GBP|JPY)",
    "transfer_funds: iban={IBAN}; beneficiary={NAME}; #amount={NUM}; ref={INVOICE}",
    "lookup_customer: email={EMAIL}",
    "lookup_customer: full_name={NAME}; dob={DOB}",
    "search_web: query=(cheap|best) (hotels|flights) (in|to) {CITY}",
    "get_weather: location={CITY}; units=(metric|imperial)",
    "create_user: username={USERNAME}; password={PASSWORD}; email={EMAIL}",
    "reset_password: user={USERNAME}; new_password={PASSWORD}",
    "block_ip: ip={IP}; reason=(brute force|spam|{ERRCODE}); #ttl_hours={NUM}",
    "add_calendar_event: title=Dinner with {NAME}; when={DATE}; where={ADDRESS}",
    "translate_text: text={PROSE}; target_lang=(de|fr|es|it|ja)",
    "summarize: text={PROSE} {PROSE}; #max_words={NUM}",
    "order_status: order_id={ORDER}",
    "refund: order_id={ORDER}; #amount={NUM}; iban={IBAN}",
    "post_message: channel=#(general|random|support); text={HANDLE} (ping|fyi): {PROSE}",
    "file_claim: policy_holder={NAME}; policy_id={IDVAL}; incident_date={DATE}",
    "verify_identity: name={NAME}; date_of_birth={DOB}; document={IDVAL}",
    "book_flight: passenger={NAME}; passport={PASSPORT}; from={CITY}; to={CITY}",
    "update_profile: user_id={USERNAME}; website={PROFILE}; job_title={JOB}",
    "run_sql: query=SELECT * FROM users WHERE email = '{EMAIL}' LIMIT {NUM}",
    "http_request: method=(GET|POST); url={URL}; #timeout={NUM}",
    "geocode: address={ADDRESS}",
    "create_invoice: customer={COMPANY}; contact={NAME}; #total={NUM}; sku={SKU}",
    "log_event: event=(login|logout|purchase); user={EMAIL}; ip={IP}",
    "get_stock_price: ticker=(AAPL|MSFT|SAP|7203.T|MC.PA); date={DATE}",
    "play_music: track={WORK}; artist={BAND}",
    "set_reminder: text=(Call|Email) {FIRST} about {TICKET}; at={TIME}",
    "navigate: destination={LANDMARK}; mode=(walking|driving|transit)",
)


def _parse_tool(spec: str) -> tuple[str, tuple[tuple[str, str], ...]]:
    name, rest = spec.split(": ", 1)
    args = []
    for part in rest.split("; "):
        key, tmpl = part.split("=", 1)
        args.append((key[1:], "=" + tmpl) if key.startswith("#") else (key, tmpl))
    return name, tuple(args)


TOOLS: tuple[tuple[str, tuple[tuple[str, str], ...]], ...] = tuple(_parse_tool(x) for x in _TOOL_SPECS)
"""(tool name, ((argument, template), ...)); a template starting with "=" is a raw JSON number."""
TOOL_KEYS: tuple[str, ...] = tuple(f"{name}/{i}" for i, (name, _) in enumerate(TOOLS))
"""One frame per tool entry (the same tool may appear with different arguments)."""


def _esc(s: str, depth: int) -> str:
    for _ in range(depth):
        s = json.dumps(s, ensure_ascii=False)[1:-1]
    return s


def add_escaped(b: Builder, sub: Builder, depth: int) -> None:
    """Copy ``sub`` into ``b`` JSON-escaped ``depth`` times, keeping its spans on the escaped values."""
    text, cur = sub.text(), 0
    for s in sub.spans:
        b.add(_esc(text[cur : s.start], depth))
        b.add(_esc(text[s.start : s.end], depth), s.label)
        cur = s.end
    b.add(_esc(text[cur:], depth))


def _args(
    ctx: Ctx, b: Builder, args: tuple[tuple[str, str], ...], depth: int, pretty: bool, ind: str
) -> None:
    q = '\\"' if depth == 2 else '"'
    keys = list(args)
    if chance(ctx, 0.2):
        ctx.rng.shuffle(keys)
    b.add("{")
    for i, (key, tmpl) in enumerate(keys):
        b.add(("," if i else "") + (f"\n{ind}  " if pretty else ("" if i == 0 else " ")))
        b.add(f"{q}{key}{q}: ")
        sub = Builder()
        render(tmpl.lstrip("="), ctx, sub)
        if tmpl.startswith("="):
            b.add(sub.text())
            continue
        b.add(q)
        add_escaped(b, sub, depth)
        b.add(q)
    b.add((f"\n{ind}" if pretty else "") + "}")


def toolcall(ctx: Ctx, b: Builder) -> str:
    """A tool call as an agent emits it: JSON object, OpenAI-style string arguments, or a call."""
    key = pick(ctx, TOOL_KEYS)
    name, args = TOOLS[int(key.rsplit("/", 1)[1])]
    style = ctx.rng.random()
    if chance(ctx, 0.15):
        b.add(ctx.rng.choice(("Calling tool:\n", "Action: ", "<tool_call>\n", "tool_calls: ")))
    if style < 0.5:
        pretty = chance(ctx, 0.4)
        b.add("{" + ("\n  " if pretty else ""))
        b.add(f'"name": "{name}", ' if not pretty else f'"name": "{name}",\n  ')
        b.add('"arguments": ')
        _args(ctx, b, args, 1, pretty, "  ")
        b.add(("\n" if pretty else "") + "}")
    elif style < 0.8:
        # OpenAI-style: the arguments object is itself a JSON string, escaped a second time.
        b.add(f'{{"type": "function", "function": {{"name": "{name}", "arguments": "')
        _args(ctx, b, args, 2, False, "")
        b.add('"}}')
    else:
        b.add(f"{name}(")
        for i, (k, tmpl) in enumerate(args):
            b.add((", " if i else "") + f"{k}=")
            sub = Builder()
            render(tmpl.lstrip("="), ctx, sub)
            if tmpl.startswith("="):
                b.add(sub.text())
            else:
                b.add('"')
                add_escaped(b, sub, 1)
                b.add('"')
        b.add(")")
    return f"toolcall:{key}"


# ------------------------------------------------------------------------------------------- logs

LOG_LINES: tuple[str, ...] = (
    "{DATETIME} (INFO|WARN|DEBUG) (auth|login|session): (login succeeded|session started) user={USERNAME} "
    "ip={IP}",
    "{DATETIME} (ERROR|WARN) payments: charge (failed|declined) card={CARD} amount={PRICE} order={ORDER}",
    "{DATETIME} INFO mailer: sent (welcome|reset) email to {EMAIL} (msg_id|id)={UUID}",
    "{IP} - - \\[{CLFDATE}\\] \"(GET|POST) /api/v(1|2)/(orders|users|items)/{NUM} HTTP/1.1\" "
    "(200|404|500) {NUM}",
    "{IP} - {USERNAME} \\[{CLFDATE}\\] \"GET /(profile|account|settings) HTTP/2\" (200|302) {NUM}",
    "{SYSLOGDATE} (web01|db-02|bastion) sshd\\[{NUM}\\]: Failed password for {USERNAME} from {IP} port "
    "{NUM} ssh2",
    "{SYSLOGDATE} (web01|mail) postfix/smtp\\[{NUM}\\]: to=<{EMAIL}>, relay=mx.{COMPANY}, status=sent",
    "(ERROR|CRITICAL):(app|api).(users|billing):(could not|failed to) (update|verify) (record|profile) "
    "for {EMAIL}",
    "\\[(INFO|DEBUG)\\] {DATETIME} request_id={UUID} path={PATH} latency={NUM}ms",
    "\\[(WARN|ERROR)\\] {DATETIME} {ERRCODE} in {FUNC} (after|in) {DURATION}",
    "{DATETIME} INFO crm: contact updated name=\"{NAME}\" phone=\"{PHONE}\"",
    "{DATETIME} DEBUG kyc: verifying document {IDVAL} for customer {IDVAL}",
    "{DATETIME} INFO deploy: {CODEWORD} rolled out {VERSION} (commit {HASH})",
    "{DATETIME} WARN billing: iban={IBAN} rejected (reason=mod97|reason=blocked)",
    "level=(info|error) ts={DATETIME} msg=\"(user signed up|address changed)\" user={USERNAME} "
    "addr=\"{ADDRESS}\"",
    "level=info ts={DATETIME} msg=\"cache warmed\" keys={NUM} took={DURATION}",
    "{DATETIME} (INFO|WARN) geo: lookup ip={IP} country={COUNTRY} city={CITY}",
    "{DATETIME} AUDIT (admin|root) viewed record of {NAME} (dob={DOB})",
)  # fmt: skip


def log(ctx: Ctx, b: Builder) -> str:
    """One to five log lines; some carry PII, some only request ids and timings."""
    first = ""
    for i in range(ctx.rng.choice((1, 1, 2, 3, 5))):
        if i:
            b.add("\n")
        t = pick(ctx, LOG_LINES)
        render(t, ctx, b)
        first = first or f"log:{stable_hash(t):08x}"
    return first


# ------------------------------------------------------------------------------------------ forms

# Field names per slot and language: "lang: name|name / lang: ...".
_KEY_SPECS: dict[str, str] = {
    "{NAME}": (
        "en: Name|Full name|NAME|Customer / de: Name|Vor- und Nachname / fr: Nom|Nom complet / es: "
        "Nombre|Nombre completo / it: Nome|Nominativo / ja: 氏名|お名前 / zh: 姓名|名字"
    ),
    "{FIRST}": (
        "en: First name|Given name / de: Vorname / fr: Prénom / es: Nombre / it: Nome / ja: 名 / zh: 名"
    ),
    "{LAST}": (
        "en: Last name|Surname / de: Nachname / fr: Nom de famille / es: Apellidos / it: Cognome / ja: 姓"
        " / zh: 姓"
    ),
    "{DOB}": (
        "en: DOB|Date of birth|Birthday / de: Geburtsdatum / fr: Date de naissance / es: Fecha de "
        "nacimiento / it: Data di nascita / ja: 生年月日 / zh: 出生日期"
    ),
    "{EMAIL}": (
        "en: Email|E-mail|Email address / de: E-Mail / fr: Courriel|E-mail / es: Correo / it: "
        "Email / ja: メール / zh: 邮箱|电子邮件"
    ),
    "{PHONE}": (
        "en: Phone|Tel|Mobile / de: Telefon|Handy / fr: Téléphone / es: Teléfono / it: "
        "Telefono|Cellulare / ja: 電話番号 / zh: 电话|手机号"
    ),
    "{ADDRESS}": (
        "en: Address|Home address / de: Adresse|Anschrift / fr: Adresse / es: Dirección / it: "
        "Indirizzo / ja: 住所 / zh: 地址|住址"
    ),
    "{POSTCODE}": (
        "en: ZIP|Postcode|Postal code / de: PLZ / fr: Code postal / es: Código postal / it: CAP "
        "/ ja: 郵便番号 / zh: 邮编"
    ),
    "{CITY}": (
        "en: City|Place of birth / de: Ort|Geburtsort / fr: Ville / es: Ciudad / it: Città / ja: 市区町村"
        " / zh: 城市|出生地"
    ),
    "{IDVAL}": (
        "en: ID number|Document no. / de: Ausweisnummer / fr: N° de pièce / es: DNI/NIE / it: "
        "Codice fiscale / ja: 個人番号 / zh: 身份证号|证件号码"
    ),
    "{JOB}": (
        "en: Occupation|Job title / de: Beruf / fr: Profession / es: Profesión / it: Professione / ja: 職業"
        " / zh: 职业"
    ),
    "{NATIONALITY}": (
        "en: Nationality / de: Staatsangehörigkeit / fr: Nationalité / es: Nacionalidad / "
        "it: Nazionalità / ja: 国籍 / zh: 国籍"
    ),
    "{AGENUM}": "en: Age / de: Alter / fr: Âge / es: Edad / it: Età / ja: 年齢 / zh: 年龄",
    "{COMPANY}": (
        "en: Employer|Company / de: Arbeitgeber / fr: Employeur / es: Empresa / it: Azienda / ja: 勤務先"
        " / zh: 工作单位"
    ),
    "{IBAN}": "en: IBAN|Bank account / de: IBAN / fr: IBAN / es: IBAN / it: IBAN / ja: 口座 / zh: 银行账户",
    "{CARD}": (
        "en: Card number|Credit card / de: Kartennummer / fr: N° de carte / es: Tarjeta / it: Carta "
        "/ ja: カード番号 / zh: 银行卡号"
    ),
    "{USERNAME}": (
        "en: Username|Login / de: Benutzername / fr: Identifiant / es: Usuario / it: Utente / ja: ユーザー名"
        " / zh: 用户名"
    ),
    "{PASSWORD}": (
        "en: Password / de: Passwort / fr: Mot de passe / es: Contraseña / it: Password / ja: パスワード"
        " / zh: 密码"
    ),
    "{ORDER}": (
        "en: Order|Order no. / de: Bestellnr. / fr: Commande / es: Pedido / it: Ordine / ja: 注文番号"
        " / zh: 订单号"
    ),
    "{PRICE}": (
        "en: Amount|Total / de: Betrag / fr: Montant / es: Importe / it: Importo / ja: 金額 / zh: 金额"
    ),
    "{DATE}": "en: Date|Start date / de: Datum / fr: Date / es: Fecha / it: Data / ja: 日付 / zh: 日期",
    "{PRODUCT}": (
        "en: Product|Item / de: Artikel / fr: Produit / es: Producto / it: Prodotto / ja: 商品 / zh: 商品"
    ),
}
_KEYS: dict[str, dict[str, tuple[str, ...]]] = {
    slot_: {lang: tuple(names.split("|")) for lang, names in (x.split(": ", 1) for x in spec.split(" / "))}
    for slot_, spec in _KEY_SPECS.items()
}

# Form types and their fields; each type is one frame (so whole form types are calib-only).
FORMS: dict[str, tuple[str, ...]] = {
    "registration": ("{NAME}", "{EMAIL}", "{USERNAME}", "{PASSWORD}", "{DOB}"),
    "shipping": ("{NAME}", "{ADDRESS}", "{PHONE}", "{ORDER}", "{PRODUCT}"),
    "medical_intake": ("{NAME}", "{DOB}", "{AGENUM}", "{PHONE}", "{IDVAL}", "{ADDRESS}"),
    "kyc": ("{FIRST}", "{LAST}", "{DOB}", "{NATIONALITY}", "{IDVAL}", "{ADDRESS}"),
    "job_application": ("{NAME}", "{EMAIL}", "{PHONE}", "{JOB}", "{COMPANY}", "{CITY}"),
    "payment": ("{NAME}", "{CARD}", "{PRICE}", "{ORDER}", "{EMAIL}"),
    "direct_debit": ("{NAME}", "{IBAN}", "{ADDRESS}", "{DATE}", "{PRICE}"),
    "hotel_checkin": ("{LAST}", "{FIRST}", "{NATIONALITY}", "{IDVAL}", "{DATE}", "{CITY}"),
    "rental": ("{NAME}", "{DOB}", "{COMPANY}", "{JOB}", "{IBAN}", "{PHONE}"),
    "school_enrolment": ("{FIRST}", "{LAST}", "{DOB}", "{AGENUM}", "{ADDRESS}", "{POSTCODE}"),
    "newsletter": ("{EMAIL}", "{FIRST}", "{CITY}"),
    "support_contact": ("{NAME}", "{EMAIL}", "{ORDER}", "{PRODUCT}", "{DATE}"),
}
FORM_KEYS: tuple[str, ...] = tuple(FORMS)


def form(ctx: Ctx, b: Builder) -> str:
    """Key/value lines of a filled-in form, in the record's language or English."""
    kind = pick(ctx, FORM_KEYS)
    fields = list(FORMS[kind])
    fields = [f for f in fields if chance(ctx, 0.8)] or fields[:2]
    if chance(ctx, 0.2):
        ctx.rng.shuffle(fields)
    lang = ctx.locale[:2] if chance(ctx, 0.5) else "en"
    sep = ctx.rng.choice((": ", ": ", ":\t", " = ", " - ", "："))
    if chance(ctx, 0.3):
        b.add(ctx.rng.choice(("Form:", "APPLICATION", "Patient details", "Customer record", "---")) + "\n")
    for i, slot_ in enumerate(fields):
        if i:
            b.add(ctx.rng.choice(("\n", "\n", "; ", " | ")) if i == 1 or chance(ctx, 0.1) else "\n")
        keys = _KEYS[slot_]
        b.add(ctx.rng.choice(keys.get(lang, keys["en"])) + sep)
        render(slot_, ctx, b)
    if chance(ctx, 0.2):
        b.add("\n" + ctx.rng.choice(lx.items("Signed | Submitted | Consent given: yes | Newsletter: no")))
    return f"form:{kind}"

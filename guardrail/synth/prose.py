"""PII-free prose on many topics, and prose that names only non-personal entities.

``PLAIN`` sentences carry no span at all (they may hold unlabelled hard negatives); ``ENTITY``
sentences label organisations, dates, public URLs and OTHER attributes but name no private person,
so the probe sees those labels outside of personal contexts too.
"""

from __future__ import annotations

from guardrail.synth.engine import Builder, Ctx, pick, render, slot

PLAIN: tuple[str, ...] = (
    # cooking
    "(Preheat|Heat) the oven to (180|200|220) degrees and (bake|roast) for {DURATION}.",
    "Whisk the eggs with (a pinch of salt|the sugar|some milk) until (smooth|pale and fluffy).",
    "(Honestly|Tbh|Turns out), the secret to good risotto is patience and (warm stock|a lot of stirring).",
    "I (tried|made) a (lentil curry|banana bread|sourdough loaf|ramen) (last night|yesterday) "
    "and it was (amazing|a disaster).",
    "Let the dough rest for {DURATION} before you (shape it|roll it out).",
    "Does anyone know a good substitute for (buttermilk|eggs|heavy cream|fish sauce) in (baking|a curry)?",
    "(Add|Stir in) {QTY} of (flour|rice|chopped tomatoes) and simmer (gently|for {DURATION}).",
    # software
    "The build fails with {ERRCODE} after upgrading to {VERSION}.",
    "(We|I) (refactored|rewrote) {FUNC} so it no longer (blocks the event loop|allocates on every call).",
    "Can you explain the difference between a process and a thread?",
    "(Please|Can you) (review|look at) the (changes|diff) in {PATH} before (we merge|the release).",
    "(The|Our) (deploy|pipeline|cron job) to {CODEWORD} (timed out|was rolled back|succeeded) "
    "after {DURATION}.",
    "Commit {HASH} (fixes|reverts|introduced) the (race condition|memory leak|flaky test) in {FUNC}.",
    "Request {UUID} returned {ERRCODE} (twice|again|after {DURATION}).",
    "How do I (reverse a list|read a CSV file|parse JSON|sort a dictionary by value) "
    "in (Python|JavaScript|Go|Rust)?",
    "(Write|Generate) a (unit test|docstring|regex) for {FUNC}[ please].",
    "Latency went from {NUM}ms to {NUM}ms after we (enabled caching|switched regions|upgraded to {VERSION}).",
    "(Bump|Pin) the dependency to {VERSION} and (rerun|restart) the (tests|job).",
    "(Summarize|Translate|Rewrite) this paragraph (in plain English|more formally|in three bullet points).",
    # shopping / orders (order numbers are not personal data)
    "(My|The) order {ORDER} (still hasn't arrived|arrived damaged|was charged twice).",
    "Ticket {TICKET} (was closed|is still open|has been escalated)[ after {DURATION}].",
    "The invoice {INVOICE} for {PRICE} (is overdue|was paid|needs a PO number).",
    "(Where is|Track) (my|the) parcel {TRACKING}?",
    "Is the {PRODUCT} (worth it|on sale|back in stock)? (It's|It was) {PRICE}.",
    "(I|We) (returned|ordered|exchanged) {QTY} of {SKU} (last week|{WHEN}).",
    "The {PRODUCT} costs {PRICE} (here|at the moment) and {PRICE} (online|in the outlet).",
    # travel
    "(The|Our) flight {FLIGHT} (is delayed by|was cancelled after waiting) {DURATION}.",
    "(We|I) (visited|finally saw) {LANDMARK} and (the queue was {DURATION} long|it was worth it).",
    "(Best|Cheapest) time to visit {LANDMARK}? (Early morning|Around {TIME}|Late evening) is quietest.",
    "Pack light: (a rain jacket|comfortable shoes|a power bank) (is|are) (essential|all you need).",
    "(The|This) train (leaves|departs) at {TIME} and takes about {DURATION}.",
    "(Check-in|Boarding) (closes|opens) {DURATION} before departure.",
    # sports
    "What a (match|game)! (Two goals|A late equaliser|Overtime) in the last {DURATION}.",
    "(The|Our) (team|club) (won|lost|drew) {SCORE} (again|at home|in the final).",
    "I (ran|cycled|swam) {NUM} (km|miles|laps) (this morning|{WHEN}) and my legs hate me.",
    "(The|This) season has been (a rollercoaster|brilliant|painful) for (fans|everyone).",
    # weather
    "(It's|It has been) (raining|snowing|sunny|freezing) (all day|since {TIME}|{WHEN}).",
    "(Forecast|The forecast) says {PERCENT} chance of (rain|storms|snow) {WHEN}.",
    "(Temperatures|Highs) will reach {NUM} degrees (by the weekend|{WHEN}).",
    # finance news
    "(Shares|Stocks) (rose|fell|slipped) {PERCENT} (after the earnings call|in early trading|{WHEN}).",
    "Inflation (eased|rose) to {PERCENT} (last month|this quarter), (above|below) expectations.",
    "The central bank (kept|raised|cut) rates (by 25 basis points|unchanged) {WHEN}.",
    "(Bitcoin|Gold|Oil) (hit|dropped to) {PRICE} (overnight|{WHEN}).",
    # books, films, music (titles of works are not people)
    "(Just finished|Rewatching|Reading) {WORK} (and I loved it|again|for book club).",
    "Is {WORK} (worth watching|better than the book|on streaming) (yet|these days)?",
    "(Playing|Listening to) {WORK} on repeat (today|{WHEN}).",
    "(My favourite|The best) scene in {WORK} is (the ending|the opening|the dinner scene).",
    # everyday
    "(Remind me|Don't forget) to (water the plants|call the plumber|renew the car insurance) {WHEN}.",
    "(Can you|Please) (set|schedule) a (timer|reminder|meeting) for {TIME}?",
    "The meeting (moved|was pushed) to {TIME} {WHEN}.",
    "(Lol|Haha|Omg) (this|that) is (so true|the best thing I've seen all week)",
    "(Thanks|Thank you) (so much|again) for your help!",
    "(What are my options|What should I do|Is that normal)?",
    "(Happy|Good) (Monday|Friday|morning) everyone!",
    "(Can't|Cannot) (sleep|focus) (tonight|today), (too much coffee|too much on my mind).",
    "The {PRODUCT} I bought {WHEN} (stopped working|is great|keeps crashing).",
    "(Quick question|One more thing): does (the warranty|the plan) cover {QTY}?",
    "(Please|Kindly) (reply|respond) within {DURATION}.",
    "(Our|The) office (is closed|closes early) {WHEN}.",
    "(Alright|Ok|Okay), (sounds good|let's do it|noted).",
    "(Dr Pepper|Jack Daniel's|Ben & Jerry's) (is|are) (overrated|underrated), change my mind.",
    "(Ford|Tesla) (just announced|recalled) {QTY} (vehicles|units) (worldwide|in Europe).",
)

ENTITY: tuple[str, ...] = (
    "{COMPANY} (reported|announced) (record profits|{PERCENT} growth|layoffs) on {DATE}.",
    "{TEAM} (beat|lost to) {TEAM} {SCORE} (on|last) {DATE}.",
    "(The new album by|Tickets for) {BAND} (drops|go on sale) on {DATE}.",
    "{UNI} (opens|closes) applications (on|by) {DATE}; details at {URL}.",
    "{AGENCY} (published|updated) its guidance on {DATE}: {URL}",
    "(Founded|Established) in {YEAR}, {COMPANY} now employs {NUM} people in {COUNTRY}.",
    "{ORG} (moved|relocated) its headquarters to {CITY} in {YEAR}.",
    "The {NATIONALITY} (government|team|delegation) (arrived|met) in {CITY} on {DATE}.",
    "(See|Read) the (release notes|docs|announcement) at {URL}.",
    "{COMPANY} (acquired|partnered with) {COMPANY} for {PRICE} (billion|million).",
    "(Festival|Conference) season in {REGION} (starts|ends) on {DATE}.",
    "{BAND} (played|will play) {LANDMARK} on {DATE}.",
    "A {JOB} at {COMPANY} (earns|makes) about {PRICE} a year in {CITY}.",
    "{ORG} (is hiring|has {NUM} openings) - apply at {URL} before {DATE}.",
    "(Storms|Floods|A heatwave) (hit|swept) {REGION} on {DATE}.",
    "{COMPANY} (shares|stock) (jumped|fell) {PERCENT} after the {YEAR} results.",
    "(Tickets|Passes) for the {TEAM} (game|match) (go on sale|sell out) on {DATE}.",
    "{UNI} (ranked|was ranked) (first|in the top ten) in {COUNTRY} (in|for) {YEAR}.",
    "{COMPANY} (will|plans to) (open|close) {NUM} stores in {REGION} by {DATE}.",
    "(The|A) {NATIONALITY} (startup|bank|airline) {COMPANY} (raised|lost) {PRICE} (this year|in {YEAR}).",
    "(Read|Download) the {YEAR} annual report of {COMPANY} at {URL}.",
    "{AGENCY} (warned|reported) on {DATE} that (prices|rents) in {CITY} (rose|fell) {PERCENT}.",
    "(Since|From) {YEAR}, {BAND} (has|have) (sold|streamed) {NUM} million (records|times).",
    "(Registration|Voting) (opens|closes) on {DATE}; see {URL} for (details|the rules).",
    "{COMPANY} and {COMPANY} (settled|ended) their (dispute|lawsuit) on {DATE}.",
    "(Many|Most) {NRP} (voters|families) in {REGION} (celebrate|observe) the holiday on {DATE}.",
)


@slot("PROSE")
def _prose(ctx: Ctx, b: Builder) -> None:
    render(pick(ctx, PLAIN), ctx, b)


@slot("EPROSE")
def _eprose(ctx: Ctx, b: Builder) -> None:
    render(pick(ctx, ENTITY), ctx, b)

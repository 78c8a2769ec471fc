"""Hand-written word lists that Faker lacks: names from outside the seven locales, organisations
of every kind, places, and the non-PII entities the probe must learn to leave alone."""

from __future__ import annotations


def items(s: str) -> tuple[str, ...]:
    """Split a ``|``-separated list (one string keeps the lists compact and format-stable)."""
    # Items may be wrapped across lines in the source: collapse runs of whitespace to one space.
    return tuple(" ".join(x.split()) for x in s.split("|") if x.strip())


# Given and family names from outside the default locales: the real sets name people from everywhere.
WORLD_FIRST: tuple[str, ...] = items(
    """
    Aarav | Priya | Rohan | Ananya | Vikram | Deepika | Wei | Mei | Jun | Xiaoling | Hao | Minh | Thu |
    Seo-yeon | Ji-ho | Min-jun | Oluwaseun | Chinedu | Amara | Kwame | Abena | Thandiwe | Sipho | Fatima
    | Omar | Layla | Yusuf | Aisha | Mehmet | Elif | Emre | Zeynep | Dmitri | Olga | Sergei | Natalia |
    Agnieszka | Piotr | Katarzyna | Jakub | Lars | Ingrid | Sven | Astrid | Mikko | Aino | João |
    Beatriz | Thiago | Larissa | Santiago | Valentina | Mateo | Camila | Nikos | Eleni | Tamar | Avi |
    Noa | Kai | Leilani | Tane | Aroha | Bogdan | Ionela | Krisztián | Zsófia | Dara | Siobhan | Eoin |
    Niamh | Rhys | Cerys
    """
)

WORLD_LAST: tuple[str, ...] = items(
    """
    Patel | Sharma | Iyer | Reddy | Chen | Wang | Li | Zhang | Nguyen | Tran | Kim | Park | Choi |
    Okafor | Adeyemi | Mensah | Boateng | Dlamini | Nkosi | Haddad | Khalil | Rahman | Hussain | Yilmaz
    | Demir | Kaya | Ivanov | Petrova | Smirnov | Kowalski | Nowak | Wiśniewska | Johansson | Lindqvist
    | Virtanen | Korhonen | Silva | Santos | Oliveira | Pereira | Gómez | Fernández | Papadopoulos |
    Cohen | Levi | Kahale | Ngata | Popescu | Szabó | Nagy | O'Brien | Ó Súilleabháin | MacLeod |
    Llewellyn | van der Berg | De Vries | Al-Farsi | Abdullah | Mukherjee | Banerjee | Osei | Tanaka |
    Kowalczyk | Horváth
    """
)

COMPANIES: tuple[str, ...] = items(
    """
    Acme Corp | Globex | Initech | Umbrella Health | Stark Industries | Northwind Traders | Contoso |
    Fabrikam | Tailspin Toys | Wayne Enterprises | Hooli | Pied Piper | Vandelay Industries | Blue
    Harbor Logistics | Silverline Bank | Crescent Insurance | Redwood Analytics | Brightpath Energy |
    Helios Solar | Quantum Freight | Orbital Telecom | Meridian Capital | Evergreen Foods | Atlas Pharma
    | Nimbus Cloud | Summit Legal LLP | Harbor & Pine | Kestrel Robotics | McDonald's | Ford | Dell |
    Tesla | Ferrari | Porsche | Disney | Boeing | Goldman Sachs | Morgan Stanley | Johnson & Johnson |
    Hewlett-Packard | Siemens | Bosch | Peugeot | Michelin | Honda | Toyota | Suzuki | Chanel | Louis
    Vuitton | Dior | Prada | Gucci | Barclays | Sainsbury's | Marks & Spencer | Lidl | Aldi | Carrefour
    | Zara | Mercadona | Telefónica | Deutsche Bank | SAP | Allianz | BNP Paribas | Société Générale |
    Enel | Fiat | Sony | Nintendo | Rakuten | Mitsubishi | Microsoft | Google | Amazon | Apple | Netflix
    | Spotify | Salesforce | Oracle | IBM | Intel | Nvidia | Adobe | Shopify | Stripe | PayPal | Uber
    """
)

BANDS: tuple[str, ...] = items(
    """
    The Beatles | Radiohead | Arctic Monkeys | Fleetwood Mac | Pink Floyd | Queen | Coldplay | The
    Rolling Stones | Daft Punk | Kraftwerk | Rammstein | ABBA | Metallica | Nirvana | Led Zeppelin | The
    Cure | Depeche Mode | Florence and the Machine | Mumford & Sons | Franz Ferdinand | Tame Impala |
    Vampire Weekend | The National | Phoenix | Måneskin | BTS | Blackpink | One Direction | Maroon 5 |
    Imagine Dragons | The Killers | Muse
    """
)

TEAMS: tuple[str, ...] = items(
    """
    Manchester United | Arsenal | Liverpool FC | Chelsea | Real Madrid | FC Barcelona | Bayern Munich |
    Borussia Dortmund | Juventus | AC Milan | Inter | Paris Saint-Germain | Olympique Lyonnais | Ajax |
    Celtic | the Lakers | the Yankees | the Red Sox | the Patriots | the Dallas Cowboys | the Chicago
    Bulls | the Golden State Warriors | the All Blacks | Yomiuri Giants | Kashima Antlers | the Toronto
    Maple Leafs | Boca Juniors | Benfica
    """
)

UNIVERSITIES: tuple[str, ...] = items(
    """
    Harvard University | MIT | Stanford | the University of Oxford | Cambridge University | Imperial
    College London | UCL | ETH Zurich | Sorbonne University | LMU Munich | Heidelberg University |
    Universidad Complutense de Madrid | Politecnico di Milano | the University of Tokyo | Kyoto
    University | UC Berkeley | Columbia University | McGill | the University of Edinburgh | King's
    College London | TU Berlin | Sciences Po
    """
)

AGENCIES: tuple[str, ...] = items(
    """
    the IRS | HMRC | the DVLA | the NHS | the FBI | NASA | the European Commission | the UN | UNICEF |
    the World Health Organization | the Red Cross | Médecins Sans Frontières | Greenpeace | the
    Bundesagentur für Arbeit | the CNIL | the Social Security Administration | the DMV | the Home Office
    | Interpol | the ECB | the Federal Reserve | the Met Office | Oxfam
    """
)

CITIES: tuple[str, ...] = items(
    """
    Lyon | Marseille | Toulouse | Munich | Hamburg | Cologne | Leipzig | Madrid | Seville | Valencia |
    Bilbao | Milan | Turin | Naples | Bologna | Osaka | Kyoto | Sapporo | Fukuoka | Manchester | Leeds |
    Bristol | Glasgow | Cardiff | Belfast | Austin | Denver | Seattle | Portland | Boston | Chicago |
    Atlanta | San Diego | Toronto | Vancouver | Montreal | Sydney | Melbourne | Auckland | Mumbai |
    Bangalore | Singapore | Seoul | Lagos | Nairobi | Cape Town | São Paulo | Buenos Aires | Mexico City
    | Lisbon | Porto | Vienna | Prague | Warsaw | Krakow | Budapest | Stockholm | Oslo | Helsinki |
    Copenhagen | Dublin | Zurich
    """
)

REGIONS: tuple[str, ...] = items(
    """
    Bavaria | Catalonia | Andalusia | Tuscany | Provence | Brittany | Normandy | Yorkshire | Cornwall |
    the Highlands | Silicon Valley | New England | the Midwest | Texas | California | Ontario | Quebec |
    Queensland | Hokkaido | Kansai | Scandinavia | the Balkans | Patagonia | Sicily | Sardinia |
    Lombardy | Saxony | Alsace | Galicia | Wales | Scotland | Kerala
    """
)

COUNTRIES: tuple[str, ...] = items(
    """
    France | Germany | Spain | Italy | Japan | the UK | the United States | Canada | Mexico | Brazil |
    Argentina | Portugal | Ireland | the Netherlands | Belgium | Switzerland | Austria | Poland | Sweden
    | Norway | Finland | Denmark | Greece | Turkey | India | China | South Korea | Vietnam | Thailand |
    Australia | New Zealand | Nigeria | Kenya | South Africa | Egypt | Morocco | Uruguay | Chile | Peru
    | Colombia | Hungary | Romania | Czechia
    """
)

NATIONALITIES: tuple[str, ...] = items(
    """
    French | German | Spanish | Italian | Japanese | British | American | Canadian | Mexican | Brazilian
    | Irish | Dutch | Polish | Swedish | Greek | Turkish | Indian | Chinese | Korean | Vietnamese |
    Nigerian | Kenyan | Egyptian | Moroccan | Portuguese | Hungarian | Romanian
    """
)

RELIGIONS: tuple[str, ...] = items(
    """
    Catholic | Protestant | Muslim | Jewish | Hindu | Buddhist | Sikh | Orthodox Christian | Mormon |
    Evangelical | Shinto | atheist | agnostic
    """
)

POLITICAL: tuple[str, ...] = items(
    """
    Democrat | Republican | Labour supporter | Conservative | Green Party member | Liberal Democrat |
    Social Democrat | Libertarian | socialist | trade unionist
    """
)

JOBS: tuple[str, ...] = items(
    """
    software engineer | nurse | senior accountant | data scientist | head of marketing | kindergarten
    teacher | paramedic | HR manager | chief financial officer | sous chef | paralegal | civil engineer
    | pharmacist | bus driver | product manager | UX designer | dental hygienist | warehouse supervisor
    | research assistant | sales representative
    """
)

TITLES: dict[str, tuple[str, ...]] = {
    "en": ("Mr.", "Mrs.", "Ms.", "Dr.", "Prof.", "Mr", "Ms", "Dr", "Miss", "Sir"),
    "de": ("Herr", "Frau", "Dr.", "Prof. Dr."),
    "fr": ("M.", "Mme", "Mlle", "Dr", "Maître"),
    "es": ("Sr.", "Sra.", "Dña.", "D.", "Dr."),
    "it": ("Sig.", "Sig.ra", "Dott.", "Dott.ssa", "Avv."),
    "ja": ("",),
    "zh": ("",),
}

JA_HONORIFICS: tuple[str, ...] = items(
    """
    さん | 様 | 先生 | -san | -sama
    """
)

ZH_HONORIFICS: tuple[str, ...] = items(
    """
    先生 | 女士 | 老师 | 经理 | 医生 | 总 | 小姐 | 同学
    """
)

# ---- unlabelled look-alikes: things with names that are not people, places or private data ----
PRODUCTS: tuple[str, ...] = items(
    """
    Ford Mustang | Jack Daniel's | Dr Pepper | Ben & Jerry's | Tesla Model 3 | iPhone 15 Pro | Galaxy
    S24 | PlayStation 5 | Nintendo Switch | MacBook Air | ThinkPad X1 Carbon | Kindle Paperwhite |
    AirPods Pro | Dyson V15 | Toyota Corolla | VW Golf | Jeep Wrangler | Honda Civic | Mr. Clean | Aunt
    Jemima syrup | Uncle Ben's rice | Johnnie Walker Black Label | Captain Morgan | Jim Beam | Sam Adams
    | Stella Artois | Häagen-Dazs | Colonel Sanders' recipe | Mrs. Fields cookies | Louis Vuitton
    Neverfull | Chanel No. 5 | Ray-Ban Wayfarer | Levi's 501 | Dr. Martens boots | Raspberry Pi 5 |
    Arduino Uno | Excel | Photoshop | Slack | Zoom | Microsoft Teams | Jira | WordPress | Figma | Notion
    | Postgres 16 | Kubernetes | Docker Desktop | VS Code | Alexa | Siri | ChatGPT | Claude | Gemini |
    Copilot | Big Mac | Whopper | Oreo | Nutella | Vegemite
    """
)

WORKS: tuple[str, ...] = items(
    """
    Pride and Prejudice | Harry Potter and the Goblet of Fire | The Great Gatsby | Moby-Dick | Anna
    Karenina | Don Quixote | Madame Bovary | Jane Eyre | David Copperfield | Emma | Oliver Twist | Romeo
    and Juliet | Hamlet | King Lear | The Godfather | Forrest Gump | Amélie | Spirited Away |
    Schindler's List | Annie Hall | Erin Brockovich | Jerry Maguire | Citizen Kane | Barbie |
    Oppenheimer | Bohemian Rhapsody | Hey Jude | Jolene | Roxanne | Billie Jean | Layla | Gloria |
    Michelle | Hotel California | Stairway to Heaven | Breaking Bad | The Office | Ted Lasso | Sherlock
    | Friends | Seinfeld | Frasier | Mona Lisa | The Starry Night | Guernica | Abbey Road | Thriller |
    Rumours | OK Computer | Becoming Jane | Being John Malkovich | Catch Me If You Can | Tom Sawyer |
    Peter Pan
    """
)

LANDMARKS: tuple[str, ...] = items(
    """
    the Eiffel Tower | Central Park | the Louvre | Big Ben | Buckingham Palace | the Colosseum | the
    Sagrada Família | the Brandenburg Gate | Mount Fuji | the Golden Gate Bridge | the Statue of Liberty
    | Times Square | Hyde Park | the Tower of London | Neuschwanstein | the Alhambra | the Uffizi | the
    Vatican Museums | Shibuya Crossing | the Grand Canyon | Niagara Falls | the Empire State Building |
    Westminster Abbey | St. Peter's Basilica | the Lincoln Memorial | the Sydney Opera House | Machu
    Picchu | the Acropolis | Stonehenge | the Rijksmuseum | the Prado | Notre-Dame | Fushimi Inari | the
    Trevi Fountain
    """
)

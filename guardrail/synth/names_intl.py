"""Given and family names from many origins, and the name picker of the ``people`` shape.

Each origin lists given names, family names and how often the family name is written first
(Hungarian, Vietnamese, Korean and Chinese names often are, even in English text). Accents,
hyphens and apostrophes are kept as written; a share is folded to ASCII, as people often type them.
"""

from __future__ import annotations

import unicodedata
from dataclasses import dataclass

from guardrail.synth import lexicon as lx
from guardrail.synth.engine import Ctx, chance

items = lx.items


@dataclass(frozen=True, slots=True)
class Origin:
    first: tuple[str, ...]
    last: tuple[str, ...]
    family_first: float = 0.0
    middle: tuple[str, ...] = ()


ORIGINS: dict[str, Origin] = {
    "hu": Origin(
        items(
            "Zsófia | Bence | Levente | Réka | Ádám | Eszter | Gergő | Dóra | Balázs | Krisztina | Csaba |"
            " Anikó | Tamás | Orsolya | Zoltán | Boglárka | Márton | Lilla | Erzsébet | Gábor"
        ),
        items(
            "Nagy | Kovács | Tóth | Szabó | Horváth | Varga | Kiss | Molnár | Németh | Farkas | Balogh |"
            " Papp | Takács | Juhász | Lakatos | Mészáros | Fekete | Szűcs | Erdős | Vörös"
        ),
        0.3,
    ),
    "cz": Origin(
        items(
            "Jiří | Tereza | Petr | Lucie | Tomáš | Kateřina | Jakub | Markéta | Ondřej | Veronika |"
            " Lukáš | Zuzana | Vojtěch | Klára | Radek | Hana | Matěj | Barbora"
        ),
        items(
            "Novák | Nováková | Svoboda | Dvořák | Černý | Procházková | Kučera | Veselý | Horáková |"
            " Němec | Marek | Pokorná | Hájek | Král | Růžičková | Beneš | Fiala | Sedláček"
        ),
    ),
    "slavic": Origin(
        items(
            "Małgorzata | Wojciech | Łukasz | Zofia | Grzegorz | Dmitry | Anastasia | Yevgeny | Svetlana |"
            " Oleksandr | Oksana | Taras | Dragan | Milica | Nikola | Jelena | Ivana | Goran | Bojana |"
            " Stoyan | Desislava | Miroslav | Ľubica | Bożena"
        ),
        items(
            "Wójcik | Kamińska | Lewandowski | Zieliński | Szymańska | Kuznetsov | Sokolova | Popov |"
            " Morozova | Shevchenko | Bondarenko | Kovalenko | Tkachuk | Jovanović | Petrović | Nikolić |"
            " Kovačević | Horvat | Babić | Dimitrov | Georgieva | Novak | Krawczyk | Mazur"
        ),
    ),
    "ar": Origin(
        items(
            "Mohammed | Ahmad | Youssef | Khalid | Omar | Hassan | Fatima | Layla | Nour | Mariam | Rania |"
            " Samir | Tariq | Huda | Abdul-Rahman | Abdullah | Salma | Karim | Zainab | Ibrahim"
        ),
        items(
            "al-Farsi | Al-Rashid | El-Sayed | Haddad | Khoury | Mansour | Nasser | bin Salman |"
            " Abu-Bakr | Qureshi | al-Amin | Hamdan | Saleh | Darwish | Aziz | el-Masri | Suleiman"
        ),
    ),
    "in": Origin(
        items(
            "Aarav | Vihaan | Ananya | Diya | Arjun | Ishaan | Kavya | Saanvi | Rohit | Sneha | Gurpreet |"
            " Harpreet | Lakshmi | Venkatesh | Meenakshi | Sandeep | Pooja | Rahul | Nikhil | Divya | Sai"
        ),
        items(
            "Sharma | Verma | Gupta | Iyer | Iyengar | Nair | Menon | Pillai | Reddy | Rao | Naidu | Singh |"
            " Kaur | Chatterjee | Banerjee | Desai | Joshi | Kulkarni | Venkataraman | Subramanian |"
            " Agarwal | Bhattacharya"
        ),
    ),
    "ng": Origin(
        items(
            "Chukwuemeka | Adaeze | Ngozi | Obinna | Chiamaka | Emeka | Oluwaseun | Olufunmilayo |"
            " Temitope | Babatunde | Folake | Ifeoma | Uchenna | Yetunde | Aminu | Hauwa | Chidi | Nnamdi |"
            " Tobenna | Kelechi"
        ),
        items(
            "Okafor | Okonkwo | Eze | Nwosu | Adebayo | Adeyemi | Ogunleye | Balogun | Olawale | Okoro |"
            " Nwachukwu | Obi | Abubakar | Bello | Danjuma | Ihejirika | Akinola | Uzor"
        ),
    ),
    "vn": Origin(
        items(
            "An | Minh | Tuấn | Mai | Linh | Hương | Dũng | Thảo | Quang | Trang | Hoàng | Ngọc | Phương |"
            " Khánh | Bảo | Hạnh"
        ),
        items("Nguyễn | Trần | Lê | Phạm | Hoàng | Huỳnh | Phan | Vũ | Võ | Đặng | Bùi | Đỗ"),
        0.6,
        items("Văn | Thị | Minh | Đức | Thu | Ngọc"),
    ),
    "kr": Origin(
        items(
            "Min-jun | Seo-yeon | Ji-woo | Ha-eun | Do-yun | Ji-ho | Su-bin | Yoon-seo | Hyun-woo |"
            " Eun-ji | Jae-hyun | Soo-ah | Jiyoung | Sungmin | Hyejin"
        ),
        items(
            "Kim | Lee | Park | Choi | Jung | Kang | Cho | Yoon | Jang | Lim | Han | Shin | Oh | Seo | Kwon"
        ),
        0.5,
    ),
    "cn": Origin(
        items("Wei | Jing | Xiaoming | Yifan | Zihan | Haoran | Meiling | Jun | Xin | Yu | Lei | Tingting"),
        items("Wang | Li | Zhang | Liu | Chen | Yang | Huang | Zhao | Wu | Zhou | Xu | Sun | Ma | Lin | Guo"),
        0.5,
    ),
    "ga": Origin(
        items(
            "Siobhán | Aoife | Caoimhe | Ciarán | Seán | Oisín | Niamh | Róisín | Padraig | Eoghan |"
            " Fionnuala | Declan"
        ),
        items(
            "O'Neil | O'Neill | O'Connor | O'Sullivan | Ní Bhriain | McAllister | MacDonald | O'Brien |"
            " D'Arcy | Ó Ceallaigh | Fitzgerald | McCarthy"
        ),
    ),
    "mixed": Origin(
        items(
            "Jean-Luc | Marie-Claire | Jean-Baptiste | Anne-Sophie | Pierre-Louis | Marie-Hélène |"
            " José María | Maria-Teresa | Hans-Peter | Karl-Heinz | Anna-Lena | Mary-Kate | Aminata |"
            " Moussa | Awa | Mamadou"
        ),
        items(
            "D'Angelo | Dell'Olio | De la Cruz | Saint-Clair | Lefèvre-Dubois | García-Márquez |"
            " Müller-Lüdenscheidt | von Weizsäcker | van den Broek | dos Santos | da Silva | Le Goff |"
            " N'Diaye | Diop | Ba | Smith-Jones"
        ),
    ),
}
_ORIGIN_NAMES = tuple(ORIGINS)


@dataclass(frozen=True, slots=True)
class Name:
    """One person: given and family name, and how the full name is ordered."""

    first: str
    last: str
    family_first: bool = False
    middle: str = ""


def fold(s: str) -> str:
    """``s`` without diacritics (letters with no ASCII form, like "ł" or "đ", mapped by hand)."""
    s = s.translate(_NO_DECOMP)
    return "".join(ch for ch in unicodedata.normalize("NFKD", s) if not unicodedata.combining(ch))


_NO_DECOMP = str.maketrans({"ł": "l", "Ł": "L", "đ": "d", "Đ": "D", "ß": "ss", "ø": "o", "Ø": "O"})


def cjk_sep(ctx: Ctx) -> str:
    """What goes between family and given name in Han or kana script: nothing, or (Japanese) a
    full-width space; never an ASCII space (these scripts put no spaces between words)."""
    return ctx.rng.choice(("", "", "\u3000")) if ctx.locale[:2] == "ja" else ""


def intl_name(ctx: Ctx) -> Name:
    """A name from one of :data:`ORIGINS` (or the lexicon's world lists), sometimes ASCII-folded."""
    rng = ctx.rng
    if chance(ctx, 0.2):
        return Name(rng.choice(lx.WORLD_FIRST), rng.choice(lx.WORLD_LAST))
    o = ORIGINS[rng.choice(_ORIGIN_NAMES)]
    first, last = rng.choice(o.first), rng.choice(o.last)
    middle = rng.choice(o.middle) if o.middle and chance(ctx, 0.6) else ""
    if chance(ctx, 0.2):
        first, last, middle = fold(first), fold(last), fold(middle)
    return Name(first, last, chance(ctx, o.family_first), middle)


def local_name(ctx: Ctx, kanji: bool = False) -> Name:
    """A name of the record's locale from Faker.

    Japanese names are romanised unless ``kanji``; Chinese ones are often written in pinyin in
    Latin-script text, and always in Han characters when ``kanji`` (text written in Chinese).
    """
    fake = ctx.fake
    if ctx.locale == "ja_JP" and not kanji:
        return Name(fake.first_romanized_name(), fake.last_romanized_name(), chance(ctx, 0.4))
    if ctx.locale == "zh_CN" and not kanji and chance(ctx, 0.6):
        return Name(fake.first_romanized_name(), fake.last_romanized_name(), chance(ctx, 0.5))
    if ctx.locale in ("ja_JP", "zh_CN"):
        return Name(fake.first_name(), fake.last_name(), True)
    last = fake.last_name()
    if ctx.locale == "es_ES" and chance(ctx, 0.3):
        last = f"{last} {fake.last_name()}"
    return Name(fake.first_name(), last)


def new_name(ctx: Ctx) -> Name:
    """A new person for the ``people`` shape: mostly the locale's names, often from elsewhere.

    Also remembered as the record's person, so that an email built later can use it.
    """
    kanji = ctx.memo.get("lang") in ("ja", "zh")
    n = local_name(ctx, kanji) if kanji or chance(ctx, 0.58) else intl_name(ctx)
    ctx.memo["person"] = (n.first, n.last)
    return n


def full(ctx: Ctx, n: Name) -> str:
    """A surface form of the whole name, safe inside a comma list (no "Last, First")."""
    if any("\u3040" <= ch <= "\u9fff" for ch in n.last):
        return f"{n.last}{cjk_sep(ctx)}{n.first}"
    if n.family_first:
        return " ".join(x for x in (n.last, n.middle, n.first) if x)
    first = f"{n.first} {n.middle}" if n.middle else n.first
    r = ctx.rng.random()
    if r < 0.68:
        return f"{first} {n.last}"
    if r < 0.8:
        return f"{n.first[0]}. {n.last}"
    if r < 0.87:
        return f"{n.first} {n.last[0]}."
    return f"{n.first} {ctx.rng.choice('ABCDEFGHJKLMNPRSTW')}. {n.last}"

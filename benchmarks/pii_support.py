"""A support-traffic corpus in the styles the gate meets in production, with labelled values.

Written apart from the scanner: it imports nothing of `governance`, and its names come from
lists typed here and from syllable grammars per culture, not from any name resource the
scanner loads (the benchmark reports recall separately for names the scanner's lexicon holds
and for names it does not, since a name the scanner has in its lists proves little).

Each record is `{"text", "spans": [[start, end, TYPE, FORM, ORIGIN]], "style", "lang"}`:
the form says how the value was written ("first-only", "caps", "last-comma-first",
"es-long", "csv-column", ...) and ORIGIN the name's culture (empty for other types). Styles:
e-mail threads with quoted replies, headers and signatures; chats with speaker labels and
timestamps; agent notes; text copied from W-2, 1099 and 1040 forms; CSV, TSV and JSON pasted
into messages; Spanish and bilingual messages; and records with no personal value at all,
full of what looks like one (notice codes, amounts, timestamps, masked TINs, form names, firm
and brand names, cities, Spanish pronouns, the IRS's own phone lines).

This is still the team's own corpus: it measures the forms the issue names, written by people
who know the rules. The figures it gives are labelled so in BENCHMARKS.md.
"""

from __future__ import annotations

import json
import random
import string
from collections.abc import Iterator
from typing import Any

# --- names, by origin -------------------------------------------------------------------

ORIGINS: dict[str, tuple[str, str]] = {
    "anglo": (
        "Raymond Linda Gary Deborah Kevin Brenda Scott Heather Dennis Tammy Keith Crystal Wayne "
        "Sherry Randy Megan Caitlyn Dustin Kimberly Travis Rhonda Clayton Misty Bradley",
        "Palmer Whitfield Hartman Caldwell Thornton McAllister Brennan Sullivan Fitzgerald "
        "Harrington Gallagher Pendleton Stroud Kessler Ingram Whitaker Lockhart Prescott",
    ),
    "english-words": (
        "Hope Faith Grace Joy Rich Bill Mark Chase Hunter Summer Autumn Dawn Rose Iris Sterling "
        "Will Rusty Sunny Honor Destiny Crystal Guy Lane Pat",
        "Cash Banks Price Hill Young Love Story Hall Marsh Bond Stone Wood Fields Church Day "
        "Summers Snow Rice Battle Small Strong Sharp Little Short Moody",
    ),
    "hispanic": (
        "Maricela José Guadalupe Alejandro Ximena Itzel Jesús Rocío Yesenia Esperanza Rigoberto "
        "Araceli Fernando Lourdes Héctor Marisol Dulce Eduardo Nayeli Socorro Maribel Osvaldo",
        "Díaz Hernández García Martínez Rodríguez López González Pérez Sánchez Ramírez Torres "
        "Flores Rivera Gómez Morales Ortiz Gutiérrez Chávez Vázquez Castillo Jiménez Ruiz",
    ),
    "korean": (
        "",
        "Kim Lee Park Choi Jung Kang Cho Yoon Jang Lim Han Shin Kwon Hwang Ahn Song "
        "Yoo Hong Jeon Moon Yang Bae Baek Heo Nam Seo Oh Ko",
    ),
    "chinese": (
        "",
        "Wang Li Zhang Liu Chen Yang Huang Zhao Wu Zhou Xu Sun Zhu Hu Guo Lin Gao "
        "Luo Zheng Liang Xie Tang Deng Feng Cao Zeng Peng Xiao Cai Pan Tian Yuan Chan "
        "Wong Leung Cheung Ng Lau",
    ),
    "vietnamese": (
        "Anh Binh Cuong Dung Giang Hai Hanh Hieu Hoa Hung Huong Khanh Lan Linh Loc Long Mai "
        "Minh Nga Ngoc Nhung Phuong Quang Quynh Tam Thao Thanh Thu Thuy Trang Trung Tuan Tung "
        "Uyen Viet Xuan Yen",
        "Nguyen Tran Le Pham Hoang Huynh Phan Vu Vo Dang Bui Do Ho Ngo Duong Ly Truong Dinh",
    ),
    "haitian": (
        "Wilner Jean-Robert Fritznel Wisline Nadège Marie-Carmelle Jocelyne Rosemond Dieudonné "
        "Fabiola Guerline Islande Kettly Lovely Mackenson Mirlande Widline Woodley Yolette "
        "Jeanty Frantz Ketia Sherly Roodly Daphnée Bellande Lesly Ernso",
        "Jean-Baptiste Pierre-Louis Joseph Dorsainvil Étienne Célestin Désir Toussaint Augustin "
        "Belizaire Fils-Aimé Lafortune Saint-Fleur Innocent Exantus Jeune Cadet Thermidor "
        "Bien-Aimé Dorvil Mondésir Jolicoeur Petit-Frère Valcourt Estimé Dorélien",
    ),
    "west-african": (
        "Chinwe Ngozi Chukwuemeka Adaeze Oluwaseun Olu Temitope Babajide Folake Kwame Kofi Ama "
        "Akosua Yaw Abena Nnamdi Ifeoma Obinna Funmilayo Tunde Chiamaka Ebere Kelechi Uchenna "
        "Ayodele Fatoumata Mamadou Aminata Ousmane Olu",
        "Adeyemi Okafor Okonkwo Nwosu Eze Mensah Boateng Asante Owusu Adebayo Olawale Onyekachi "
        "Chukwu Obi Ogunleye Balogun Diallo Traoré Keita Coulibaly Ndiaye Nwachukwu Agyeman "
        "Afolabi Adeyemi",
    ),
    "south-asian": (
        "Priyanka Raman Aarav Ananya Vikram Deepika Sanjay Lakshmi Rohit Kavya Arjun Sneha "
        "Harpreet Gurpreet Manpreet Rajesh Sunita Nikhil Pooja Anil Farhan Ayesha Imran Nusrat",
        "Raman Patel Shah Sharma Iyer Reddy Venkataraman Krishnamurthy Gupta Singh Kaur "
        "Chowdhury Banerjee Mukherjee Nair Pillai Rao Desai Joshi Malhotra Hossain Rahman",
    ),
    "arabic": (
        "Maha Omar Khalid Fatima Layla Yousef Rania Tariq Noor Samir Huda Bilal Amira Hamza "
        "Salma Rashid Dalia Karim Mona Ziad Abeer Wael",
        "Haddad Al-Farsi Khoury Nasser Saleh Abdullah Mansour Hamdan El-Sayed Aziz Qasim Bakr "
        "Darwish Halabi Najjar Shami Othman Zayed Al-Amin",
    ),
    "slavic": (
        "Oleksandr Olena Dmytro Iryna Bohdan Kateryna Mykola Tetiana Wojciech Agnieszka "
        "Krzysztof Małgorzata Piotr Zofia Svetlana Yuriy Natalia Andriy Halyna",
        "Wójcik Kowalski Nowak Lewandowska Zieliński Shevchenko Kovalenko Bondarenko Tkachenko "
        "Melnyk Kravchuk Petrenko Wiśniewski Kamińska Dąbrowski Ivanova Sokolov Hrytsenko",
    ),
    "filipino": (
        "Maricel Rowena Jomar Rizalina Arnel Jenalyn Marivic Rodel Lorna Ernesto Analyn Jhun "
        "Marites Jerico Lovelyn",
        "Dela-Cruz Santos Reyes Bautista Villanueva Magbanua Dimaculangan Macapagal Pangilinan "
        "Soriano Manalo Tolentino Ocampo Mercado Dimaano",
    ),
    "japanese": (
        "Haruto Yui Sota Aoi Ren Hina Kaito Mei Takeshi Yuki Kenji Naoko Hiroshi Emiko Daisuke "
        "Ayaka Shota Misaki",
        "Sato Suzuki Takahashi Tanaka Watanabe Ito Yamamoto Nakamura Kobayashi Kato Yoshida "
        "Yamada Sasaki Matsumoto Inoue Kimura Hayashi Shimizu",
    ),
    "east-african": (
        "Abdirahman Hodan Faadumo Abdiwali Ayaan Tsegaye Meseret Alemayehu Selamawit Yohannes "
        "Berhane Tigist Dawit Hirut Ifrah Warsame Liban Sagal",
        "Warsame Abdi Farah Hassan Mohamud Tesfaye Gebremedhin Haile Bekele Wolde Mengistu "
        "Osman Jama Yusuf Gebreyes Abera",
    ),
}
KOREAN_SYLLABLES = (
    "min ji seo yeon hyun woo jun soo eun ha young jin hye kyung sung dong hoon jae yoon bin "
    "chan gyu na ra hee sol tae won seung ho in sook mi"
).split()
CHINESE_SYLLABLES = (
    "wei fang xiu ying jing li min jun hao yu xin yi jie tao lei qiang ping hong mei ling hui "
    "yan zhi chen rui xuan zi han bo peng ning shu qing jia xiao"
).split()
VIETNAMESE_MIDDLE = "Van Thi Duc Minh Ngoc Thanh Hoang Quoc".split()


def _korean_given(rng: random.Random) -> str:
    a, b = rng.sample(KOREAN_SYLLABLES, 2)
    return rng.choice([f"{a.title()}-{b}", f"{a.title()}{b}", f"{a.title()}-{b.title()}"])


def _chinese_given(rng: random.Random) -> str:
    if rng.random() < 0.3:
        return rng.choice(CHINESE_SYLLABLES).title()
    a, b = rng.sample(CHINESE_SYLLABLES, 2)
    return f"{a.title()}{b}" if rng.random() < 0.7 else f"{a.title()} {b.title()}"


def person(rng: random.Random, origin: str | None = None) -> tuple[str, str, str, str]:
    """(given, family, full in the origin's usual order, origin)."""
    origin = origin or rng.choice(list(ORIGINS))
    given_list, family_list = (s.split() for s in ORIGINS[origin])
    family = rng.choice(family_list).replace("Dela-Cruz", "Dela Cruz")
    if origin == "korean":
        given = _korean_given(rng)
    elif origin == "chinese":
        given = _chinese_given(rng)
    else:
        given = rng.choice(given_list)
    if origin == "vietnamese":
        middle = rng.choice(VIETNAMESE_MIDDLE)
        return given, family, f"{family} {middle} {given}", origin
    if origin == "hispanic" and rng.random() < 0.3:
        return given, family, f"{given} {family} {rng.choice(family_list)}", origin
    return given, family, f"{given} {family}", origin


# --- other values -------------------------------------------------------------------------

MONTHS_EN = (
    "January February March April May June July August September October November December".split()
)
MONTHS_ES = "enero febrero marzo abril mayo junio julio agosto septiembre octubre noviembre diciembre".split()
STREETS = (
    "Oak Maple Cedar Pine Elm Willow Magnolia Lakeview Sunset Hillcrest Ridgeway Meadowbrook "
    "Juniper Brookside Orchard Kingsley Carver Jefferson Lincoln Bayou Mesquite Palo Verde"
).split()
SUFFIXES = "St Street Ave Avenue Rd Road Dr Drive Ln Lane Ct Blvd Way Pl Terrace Cir".split()
CITIES = [
    ("Houston", "TX"),
    ("Miami", "FL"),
    ("Brooklyn", "NY"),
    ("Fresno", "CA"),
    ("Tulsa", "OK"),
    ("Lowell", "MA"),
    ("Dearborn", "MI"),
    ("Fort Lee", "NJ"),
    ("Garden Grove", "CA"),
    ("Minneapolis", "MN"),
    ("Laredo", "TX"),
    ("Atlanta", "GA"),
    ("Columbus", "OH"),
]
MAIL_HOSTS = "gmail.com yahoo.com outlook.com hotmail.com icloud.com aol.com proton.me".split()


def _d(rng: random.Random, n: int, first: str = string.digits) -> str:
    return rng.choice(first) + "".join(rng.choice(string.digits) for _ in range(n - 1))


def _luhn(prefix: str, length: int, rng: random.Random) -> str:
    body = prefix + "".join(rng.choice(string.digits) for _ in range(length - len(prefix) - 1))
    for last in string.digits:
        digits = body + last
        total = 0
        for i, ch in enumerate(reversed(digits)):
            v = int(ch) * (2 if i % 2 else 1)
            total += v - 9 if v > 9 else v
        if total % 10 == 0:
            return digits
    raise AssertionError


def _aba(rng: random.Random) -> str:
    while True:
        head = rng.choice("0123") + _d(rng, 7)
        for last in string.digits:
            n = head + last
            if sum(int(c) * w for c, w in zip(n, [3, 7, 1] * 3, strict=True)) % 10 == 0:
                return n


def ssn(rng: random.Random) -> tuple[str, str]:
    a, b, c = rng.randint(101, 665), rng.randint(10, 99), rng.randint(1000, 9999)
    form = rng.choice(["dashed", "dashed", "plain", "spaced"])
    return {"dashed": f"{a}-{b}-{c}", "plain": f"{a}{b}{c}", "spaced": f"{a} {b} {c}"}[form], form


def dob(rng: random.Random, lang: str = "en") -> tuple[str, str, tuple[int, int, int]]:
    y, m, d = rng.randint(1931, 2008), rng.randint(1, 12), rng.randint(1, 28)
    if lang == "es":
        form = rng.choice(["es-long", "es-numeric", "es-short-month"])
        value = {
            "es-long": f"{d} de {MONTHS_ES[m - 1]} de {y}",
            "es-numeric": f"{d:02d}/{m:02d}/{y}",
            "es-short-month": f"{d}-{MONTHS_ES[m - 1][:3]}-{y}",
        }[form]
        return value, form, (y, m, d)
    form = rng.choice(["us-slash", "iso", "long", "dmy-caps", "short-year"])
    value = {
        "us-slash": f"{m:02d}/{d:02d}/{y}",
        "iso": f"{y}-{m:02d}-{d:02d}",
        "long": f"{MONTHS_EN[m - 1]} {d}, {y}",
        "dmy-caps": f"{d:02d}-{MONTHS_EN[m - 1][:3].upper()}-{y}",
        "short-year": f"{m}/{d}/{str(y)[2:]}",
    }[form]
    return value, form, (y, m, d)


def street(rng: random.Random) -> tuple[str, str]:
    form = rng.choice(["title", "caps", "lower", "numbered-caps", "unit", "po-box", "rural"])
    n = rng.randint(12, 19999)
    name, suffix = rng.choice(STREETS), rng.choice(SUFFIXES)
    pre = rng.choice(["", "", "N ", "S ", "E ", "W "])
    if form == "title":
        return f"{n} {pre}{name} {suffix}", form
    if form == "caps":
        return f"{n} {pre}{name} {suffix}".upper(), form
    if form == "lower":
        return f"{n} {pre}{name} {suffix}".lower(), form
    if form == "numbered-caps":
        k = rng.randint(2, 199)
        ordinal = (
            f"{k}{'TH' if 10 <= k % 100 <= 20 else {1: 'ST', 2: 'ND', 3: 'RD'}.get(k % 10, 'TH')}"
        )
        return f"{n} {ordinal} {rng.choice(['AVE', 'ST', 'PL', 'AVE NE', 'ST SW'])}", form
    if form == "unit":
        unit = rng.choice(["Apt", "Unit", "#", "Apt.", "Ste"])
        return f"{n} {name} {suffix} {unit} {rng.randint(1, 40)}{rng.choice(['', 'B', 'C'])}", form
    if form == "po-box":
        return f"{rng.choice(['PO Box', 'P.O. Box', 'PO BOX'])} {rng.randint(10, 9999)}", form
    return (
        f"{rng.choice(['RR', 'Rural Route', 'HC'])} {rng.randint(1, 9)} Box {rng.randint(10, 999)}",
        form,
    )


def city_line(rng: random.Random, caps: bool = False) -> str:
    city, state = rng.choice(CITIES)
    line = f"{city}, {state} {rng.randint(10000, 99999)}"
    return line.upper() if caps else line


def email_of(rng: random.Random, given: str, family: str) -> str:
    g = _ascii(given).lower().replace(" ", "").replace("-", "")
    f = _ascii(family).lower().replace(" ", "").replace("-", "")
    handle = rng.choice(
        [f"{g}.{f}", f"{g[0]}{f}", f"{g}{rng.randint(1, 99)}", f"{f}.{g}{rng.randint(70, 99)}"]
    )
    return f"{handle}@{rng.choice(MAIL_HOSTS)}"


def _ascii(text: str) -> str:
    import unicodedata

    return "".join(
        c for c in unicodedata.normalize("NFKD", text) if not unicodedata.combining(c)
    ).replace("ł", "l")


def phone(rng: random.Random) -> tuple[str, str]:
    a, b, c = rng.randint(201, 989), rng.randint(200, 999), rng.randint(1000, 9999)
    form = rng.choice(["paren", "dashed", "dots", "plain", "plus1"])
    return {
        "paren": f"({a}) {b}-{c}",
        "dashed": f"{a}-{b}-{c}",
        "dots": f"{a}.{b}.{c}",
        "plain": f"{a}{b}{c}",
        "plus1": f"+1 {a} {b} {c}",
    }[form], form


def identifiers(rng: random.Random) -> dict[str, tuple[str, str]]:
    """One value of each structured type, with its form."""
    iban_country = rng.choice(["DE", "GB", "FR", "ES", "NL"])
    iban = f"{iban_country}{rng.randint(10, 99)}" + "".join(
        rng.choice(string.digits) for _ in range(18)
    )
    iban_form = rng.choice(["compact", "grouped"])
    if iban_form == "grouped":
        iban = " ".join(iban[i : i + 4] for i in range(0, len(iban), 4))
    card = _luhn(rng.choice(["4", "51", "37", "6011"]), 16 if rng.random() < 0.8 else 15, rng)
    card_form = rng.choice(["plain", "spaced"])
    if card_form == "spaced":
        card = " ".join(card[i : i + 4] for i in range(0, len(card), 4))
    itin = f"9{rng.randint(10, 99)}-{rng.choice([70, 73, 78, 81, 88, 90, 94])}-{rng.randint(1000, 9999)}"
    dl = rng.choice(
        [
            f"{rng.choice(string.ascii_uppercase)}{_d(rng, 7)}",
            f"{rng.choice(string.ascii_uppercase)}{_d(rng, 3)}-{_d(rng, 4)}-{_d(rng, 4)}",
            _d(rng, 9),
        ]
    )
    return {
        "US_EIN": (
            f"{rng.choice(['12', '27', '36', '45', '84', '91', '20', '65'])}-{_d(rng, 7)}",
            "dashed",
        ),
        "US_ITIN": (itin, "dashed"),
        "US_BANK_NUMBER": (_d(rng, rng.choice([9, 10, 12])), "plain"),
        "ABA_ROUTING_NUMBER": (_aba(rng), "plain"),
        "CREDIT_CARD": (card, card_form),
        "IBAN_CODE": (iban, iban_form),
        "IP_ADDRESS": (
            f"{rng.randint(23, 223)}.{rng.randint(0, 255)}.{rng.randint(0, 255)}.{rng.randint(1, 254)}",
            "v4",
        ),
        "PASSPORT": (
            rng.choice(["", "", "X", "A"]) + _d(rng, 8 if rng.random() < 0.5 else 9),
            "cued",
        ),
        "US_DRIVER_LICENSE": (dl, "cued"),
    }


# --- harmless look-alikes -------------------------------------------------------------------


def notice_code(rng: random.Random) -> str:
    return rng.choice(
        [
            f"IND-{rng.randint(100, 999)}-0{rng.randint(1, 4)}",
            f"R0000-{rng.randint(500, 999)}-0{rng.randint(1, 3)}",
            f"F{rng.choice(['1040', '8962', '8867'])}-{rng.randint(100, 999)}-0{rng.randint(1, 3)}",
            f"CP{rng.choice(['2000', '14', '501', '503', '11', '12', '90'])}",
            f"LTR {rng.choice(['4883C', '5071C', '12C', '2645C'])}",
        ]
    )


def masked_tin(rng: random.Random) -> str:
    return rng.choice(
        [
            f"XXX-XX-{rng.randint(1000, 9999)}",
            f"***-**-{rng.randint(1000, 9999)}",
            f"xxx-xx-{rng.randint(1000, 9999)}",
        ]
    )


def amount(rng: random.Random) -> str:
    value = rng.randint(100, 250000) + rng.randint(0, 99) / 100
    return rng.choice([f"{value:,.2f}", f"${value:,.2f}", f"{value:.2f}", f"{int(value)}.00"])


def timestamp(rng: random.Random) -> str:
    return (
        f"2025-0{rng.randint(1, 4)}-{rng.randint(10, 28)}T{rng.randint(10, 23)}:"
        f"{rng.randint(10, 59)}:{rng.randint(10, 59)}{rng.choice(['Z', '.123Z', '-05:00'])}"
    )


CLEAN_EN = [
    "The rejection code was {notice}, which means the AGI didn't match last year's return.",
    "Your return was accepted at {ts} and the refund should post in 21 days.",
    "Box 1 shows {amount} and box 2 shows {amount}; both go on line 1a.",
    "The SSA-1099 and the 1095-A are both in the upload folder now.",
    "Your prior-year AGI was {amount} and your self-select PIN is {pin}.",
    "We see the TIN on file as {masked}, matching the W-2.",
    "The W-2 control number is {control}; it is not needed for e-file.",
    "The refund hotline 800-829-1954 has the same status as Where's My Refund.",
    "Rio Grande Tax Services filed the prior year; the firm has closed since.",
    "The 1099-B came from Charles Schwab and the 1098-E from Sallie Mae.",
    "She went to Jackson Hewitt last year and H&R Block the year before.",
    "We moved from Nuevo Laredo to Tyler, TX in August.",
    "The banks said the deposit was returned because the account was closed.",
    "Form 8962 reconciles the premium tax credit from the 1095-A.",
    "Penalty of {amount} was abated after the first-time abatement request.",
    "Line 19 credit was {amount}; Schedule 8812 shows the math.",
    "The notice {notice} asks for proof of the dependent's residency.",
    "Log: {ts} session started; {ts} upload complete; {ts} e-file transmitted.",
    "Balance due is {amount}, payable through Direct Pay by April 15.",
    "The case was escalated to the Taxpayer Advocate Service.",
]
CLEAN_ES = [
    "Buenas tardes, ¿ya salió el reembolso? Ella dice que no le ha llegado nada.",
    "El formulario 1095-A llegó tarde; lo mando mañana con el W-2.",
    "Le pregunto a mi contador y le aviso. Lo siento por la demora.",
    "Buenas, el código de rechazo fue {notice}.",
    "El saldo es de {amount} y se paga antes del 15 de abril.",
]


# --- records --------------------------------------------------------------------------------


class Record:
    def __init__(self, style: str, lang: str) -> None:
        self.text = ""
        self.spans: list[list[Any]] = []
        self.style, self.lang = style, lang

    def add(self, chunk: str) -> Record:
        self.text += chunk
        return self

    def value(self, value: str, entity: str, form: str, origin: str = "") -> Record:
        self.spans.append([len(self.text), len(self.text) + len(value), entity, form, origin])
        self.text += value
        return self

    def name(self, value: str, form: str, origin: str) -> Record:
        return self.value(value, "PERSON", form, origin)

    def done(self) -> dict[str, Any]:
        return {"text": self.text, "spans": self.spans, "style": self.style, "lang": self.lang}


def _fill(template: str, rng: random.Random) -> str:
    return (
        template.replace("{notice}", notice_code(rng), 1)
        .replace("{ts}", timestamp(rng))
        .replace("{amount}", amount(rng))
        .replace("{masked}", masked_tin(rng))
        .replace("{pin}", _d(rng, 5))
        .replace("{control}", f"{rng.choice(string.ascii_uppercase)}{_d(rng, 4)} {_d(rng, 4)}")
        .replace("{case}", f"{rng.choice(['#', 'no. ', ''])}{rng.randint(100000, 999999)}")
    )


def _clean(rng: random.Random, k: int = 1, lang: str = "en") -> str:
    pool = CLEAN_ES if lang == "es" else CLEAN_EN
    return " ".join(_fill(rng.choice(pool), rng) for _ in range(k))


def _caps_or(rng: random.Random, text: str) -> tuple[str, str]:
    r = rng.random()
    if r < 0.2:
        return text.upper(), "caps"
    if r < 0.3:
        return text.lower(), "lower"
    return text, "full"


def email_thread(rng: random.Random) -> dict[str, Any]:
    agent_g, agent_f, _af, agent_o = person(rng)
    given, family, full, origin = person(rng)
    r = Record("email", "en")
    r.add("Hi ").name(given, "first-only", origin).add(",\n\n")
    r.add(_clean(rng)).add(" ")
    r.add(rng.choice(["Can you confirm my date of birth on file is ", "My DOB is "]))
    value, form, _ = dob(rng)
    r.value(value, "DATE_OF_BIRTH", form).add("? ")
    r.add("My SSN is ")
    v, f = ssn(rng)
    r.value(v, "US_SSN", f).add(" and the new address is ")
    v, f = street(rng)
    r.value(v, "STREET_ADDRESS", f).add(", " + city_line(rng) + ".\n\n")
    r.add(rng.choice(["Thanks,\n", "Best regards,\n", "Thank you!\n-- \n"]))
    sig_form = rng.choice(["full", "initial", "caps"])
    if sig_form == "initial":
        r.name(f"{agent_g} {agent_f[0]}.", "first-initial", agent_o)
    elif sig_form == "caps":
        r.name(f"{agent_g} {agent_f}".upper(), "caps", agent_o)
    else:
        r.name(f"{agent_g} {agent_f}", "signature", agent_o)
    r.add("\nSenior Tax Associate\n\n")
    r.add("On Tue, Mar 4, 2025 at 9:12 AM ").name(full, "quote-header", origin).add(" <")
    r.value(email_of(rng, given, family), "EMAIL_ADDRESS", "plain").add("> wrote:\n")
    r.add("> ").add(_clean(rng)).add("\n> Call me at ")
    v, f = phone(rng)
    r.value(v, "PHONE_NUMBER", f).add(" after 5.\n> \n> ")
    r.name(given.lower() if rng.random() < 0.5 else given, "first-only", origin).add("\n")
    r.add(
        f"\nFrom: Support <support@examplefirm.com>\nDate: {rng.choice(['Mon', 'Tue', 'Wed'])}, "
        f"{rng.randint(1, 28)} Mar 2025 {rng.randint(8, 17)}:{rng.randint(10, 59)}:00 -0500\n"
        "Subject: Re: your 2024 return\n"
    )
    return r.done()


def chat(rng: random.Random) -> dict[str, Any]:
    agent_g, _agent_f, _af, agent_o = person(rng)
    given, family, full, origin = person(rng)
    r = Record("chat", "en")
    t = timestamp(rng)
    r.add(f"[{t}] ").name(agent_g, "chat-label", agent_o).add(" (Tax Pro): Hi, I'm ")
    r.name(agent_g, "first-only", agent_o).add(". Who am I speaking with?\n")
    label = given.lower() if rng.random() < 0.4 else given
    r.add(f"[{timestamp(rng)}] ").name(label, "chat-label", origin).add(": hi this is ")
    shown, form = _caps_or(rng, full)
    r.name(shown, form if form != "full" else "running", origin).add(", my husband ")
    sg, _sf, _sfull, so = person(rng, origin if rng.random() < 0.7 else None)
    r.name(sg, "relation", so).add(" and I filed jointly. ")
    r.add(_clean(rng)).add("\n")
    r.add(f"[{timestamp(rng)}] ").name(agent_g, "chat-label", agent_o).add(" (Tax Pro): ")
    r.add("I can help. Can you verify the last bank account we have? ")
    r.add("\n")
    r.add(f"[{timestamp(rng)}] ").name(label, "chat-label", origin).add(": account ")
    ids = identifiers(rng)
    r.value(*ids["US_BANK_NUMBER"][:1], "US_BANK_NUMBER", "plain").add(" routing ")
    r.value(ids["ABA_ROUTING_NUMBER"][0], "ABA_ROUTING_NUMBER", "plain").add("\n")
    r.add(f"[{timestamp(rng)}] ").name(agent_g, "chat-label", agent_o).add(" (Tax Pro): ")
    r.add("Thanks, I'll update it within the hour, ").name(given.lower(), "first-only", origin).add(
        ".\n"
    )
    return r.done()


def agent_note(rng: random.Random) -> dict[str, Any]:
    given, family, full, origin = person(rng)
    r = Record("note", "en")
    form = rng.choice(["last-comma-first", "tp-last-comma-first", "first-initial", "full"])
    r.add(rng.choice(["Spoke w/ ", "Call from ", "TP: "]))
    if form == "last-comma-first":
        r.name(f"{family}, {given} {rng.choice(string.ascii_uppercase)}", form, origin)
    elif form == "tp-last-comma-first":
        r.add("TP ").name(f"{family}, {given} {rng.choice(string.ascii_uppercase)}", form, origin)
    elif form == "first-initial":
        r.name(f"{given} {family[0]}.", form, origin)
    else:
        r.name(full, "running", origin)
    r.add(f" re: {notice_code(rng)}. Verified DOB ")
    value, vf, _ = dob(rng)
    r.value(value, "DATE_OF_BIRTH", vf).add(" and ITIN ")
    ids = identifiers(rng)
    r.value(ids["US_ITIN"][0], "US_ITIN", "dashed").add(". ")
    r.add(_clean(rng)).add(" DL ")
    r.value(ids["US_DRIVER_LICENSE"][0], "US_DRIVER_LICENSE", "cued").add(" on file; passport ")
    r.value(ids["PASSPORT"][0], "PASSPORT", "cued").add(". Login from IP ")
    r.value(ids["IP_ADDRESS"][0], "IP_ADDRESS", "v4").add(f" at {timestamp(rng)}.")
    if rng.random() < 0.5:
        r.add(" Card on file ").value(
            ids["CREDIT_CARD"][0], "CREDIT_CARD", ids["CREDIT_CARD"][1]
        ).add(".")
    else:
        r.add(" Refund to IBAN ").value(ids["IBAN_CODE"][0], "IBAN_CODE", ids["IBAN_CODE"][1]).add(
            "."
        )
    return r.done()


def form_text(rng: random.Random) -> dict[str, Any]:
    given, family, _full, origin = person(rng)
    employer = rng.choice(["ACME LOGISTICS LLC", "Bayou Dental Group PC", "SUNRISE HOME CARE INC"])
    ids = identifiers(rng)
    r = Record("form", "en")
    kind = rng.choice(["w2", "1040", "1099"])
    if kind == "w2":
        r.add("W-2 Wage and Tax Statement 2024\na Employee's social security number ")
        v, f = ssn(rng)
        r.value(v, "US_SSN", f).add("\nb Employer identification number (EIN) ")
        r.value(ids["US_EIN"][0], "US_EIN", "dashed").add(
            f"\nc Employer's name, address, and ZIP code {employer}\n"
        )
        r.add(f"d Control number {rng.choice(string.ascii_uppercase)}{_d(rng, 4)} {_d(rng, 4)}\n")
        r.add("e Employee's first name and initial Last name ")
        r.name(f"{given} {family}".upper(), "caps", origin).add(
            "\nf Employee's address and ZIP code "
        )
        v, f = street(rng)
        r.value(v.upper(), "STREET_ADDRESS", "form-caps").add(" " + city_line(rng, caps=True))
        r.add(
            f"\n1 Wages, tips, other compensation {amount(rng)} 2 Federal income tax withheld {amount(rng)}\n"
        )
    elif kind == "1040":
        r.add(
            "Form 1040 U.S. Individual Income Tax Return 2024\nYour first name and middle initial "
        )
        r.name(given, "form-field", origin).add(" Last name ").name(family, "form-field", origin)
        r.add(" Your social security number ")
        v, f = ssn(rng)
        r.value(v, "US_SSN", f).add("\nHome address (number and street) ")
        v, f = street(rng)
        r.value(v, "STREET_ADDRESS", f).add(" City, town, or post office, state, and ZIP code ")
        r.add(city_line(rng)).add(f"\nLine 1a {amount(rng)} Line 11 {amount(rng)}\n")
        r.add("Dependents: (1) First name Last name ")
        dg, _df, dfull, do = person(rng, origin)
        r.name(f"{dg} {family}", "form-field", do).add(" (2) SSN ")
        v, f = ssn(rng)
        r.value(v, "US_SSN", f).add(" (3) Relationship son\n")
    else:
        r.add("1099-INT Interest Income 2024\nPAYER'S TIN ")
        r.value(ids["US_EIN"][0], "US_EIN", "dashed").add(" RECIPIENT'S TIN ")
        v, f = ssn(rng)
        r.value(v, "US_SSN", f).add("\nRECIPIENT'S name ")
        r.name(f"{given} {family}".upper(), "caps", origin).add(
            "\nStreet address (including apt. no.) "
        )
        v, f = street(rng)
        r.value(v.upper(), "STREET_ADDRESS", "form-caps").add("\n" + city_line(rng, caps=True))
        r.add("\nAccount number (see instructions) ").value(
            ids["US_BANK_NUMBER"][0], "US_BANK_NUMBER", "plain"
        )
        r.add(f"\n1 Interest income {amount(rng)}\n")
    return r.done()


CSV_HEADERS = [
    ("name", "ssn", "dob", "address", "phone"),
    ("Taxpayer Name", "SSN", "Date of Birth", "Street", "Email"),
    ("first_name", "last_name", "birth_date", "tin", "acct"),
    ("nombre", "apellido", "fecha de nacimiento", "direccion", "telefono"),
]


def pasted_table(rng: random.Random) -> dict[str, Any]:
    r = Record("csv", "en")
    header = rng.choice(CSV_HEADERS)
    sep = rng.choice([",", ",", "\t", ";"])
    with_header = rng.random() < 0.75
    r.add(
        rng.choice(
            [
                "Here is the export from our payroll system:\n",
                "pasting the list below\n\n",
                "Dependents:\n",
            ]
        )
    )
    if with_header:
        r.add(sep.join(header) + "\n")
    for _ in range(rng.randint(2, 4)):
        given, family, full, origin = person(rng)
        cells: list[tuple[str, str | None, str]] = []
        for column in header:
            key = column.lower()
            if key in ("name", "taxpayer name"):
                shown, form = _caps_or(rng, f"{given} {family}")
                cells.append((shown, "PERSON", "csv-" + form))
            elif key in ("first_name", "nombre"):
                cells.append(
                    (given.upper() if rng.random() < 0.3 else given, "PERSON", "csv-column")
                )
            elif key in ("last_name", "apellido"):
                cells.append(
                    (family.upper() if rng.random() < 0.3 else family, "PERSON", "csv-column")
                )
            elif key in ("ssn", "tin"):
                cells.append((ssn(rng)[0], "US_SSN", "csv-column"))
            elif key in ("dob", "date of birth", "birth_date", "fecha de nacimiento"):
                value, _f, _ = dob(rng, "es" if key.startswith("fecha") else "en")
                cells.append((value, "DATE_OF_BIRTH", "csv-column"))
            elif key in ("address", "street", "direccion"):
                cells.append((street(rng)[0], "STREET_ADDRESS", "csv-column"))
            elif key in ("phone", "telefono"):
                cells.append((phone(rng)[0], "PHONE_NUMBER", "csv-column"))
            elif key == "email":
                cells.append((email_of(rng, given, family), "EMAIL_ADDRESS", "csv-column"))
            elif key == "acct":
                cells.append((_d(rng, 10), "US_BANK_NUMBER", "csv-column"))
        for i, (value, entity, form) in enumerate(cells):
            if i:
                r.add(sep)
            quoted = sep in value
            r.add('"' if quoted else "")
            origin_of = origin if entity == "PERSON" else ""
            r.value(value, entity, form if with_header else "csv-headerless", origin_of)
            r.add('"' if quoted else "")
        r.add("\n")
    r.add(_clean(rng))
    return r.done()


def pasted_json(rng: random.Random) -> dict[str, Any]:
    r = Record("json", "en")
    given, family, _full, origin = person(rng)
    r.add(rng.choice(["The API returned this for the client:\n", "debug payload: "]))
    value, _f, _ = dob(rng)
    ids = identifiers(rng)
    fields = [
        ("first_name", given, "PERSON"),
        ("last_name", family, "PERSON"),
        (rng.choice(["dob", "birth_date", "dateOfBirth"]), value, "DATE_OF_BIRTH"),
        (rng.choice(["ssn", "tin", "taxpayer_id"]), ssn(rng)[0], "US_SSN"),
        ("address", street(rng)[0], "STREET_ADDRESS"),
        ("routing", ids["ABA_ROUTING_NUMBER"][0], "ABA_ROUTING_NUMBER"),
        ("account", ids["US_BANK_NUMBER"][0], "US_BANK_NUMBER"),
        ("status", "accepted", None),
        ("submission_ts", timestamp(rng), None),
    ]
    rng.shuffle(fields)
    r.add("{")
    for i, (key, val, entity) in enumerate(fields):
        r.add(", " if i else "").add(json.dumps(key) + ': "')
        if entity:
            r.value(val, entity, "json-key", origin if entity == "PERSON" else "")
        else:
            r.add(val)
        r.add('"')
    r.add("}\n")
    return r.done()


def spanish(rng: random.Random) -> dict[str, Any]:
    given, family, full, origin = person(rng, rng.choice(["hispanic", "hispanic", None]))
    r = Record("spanish", "es")
    r.add(rng.choice(["Buenas tardes, ", "Hola, ", "Buenos días. "]))
    r.add(rng.choice(["me llamo ", "soy ", "le escribe "]))
    shown, form = _caps_or(rng, full)
    r.name(shown, form, origin).add(". ")
    r.add(_clean(rng, lang="es")).add(" Mi mamá ")
    mg, mf, mfull, mo = person(rng, origin)
    r.name(f"{mg} {mf}", "relation", mo).add(
        rng.choice([" nació el ", ", fecha de nac. ", ", fecha de nacimiento: "])
    )
    value, f, _ = dob(rng, "es")
    r.value(value, "DATE_OF_BIRTH", f).add(". ")
    r.add("Le mando mis datos: ")
    r.name(f"{given} {family}".upper(), "caps", origin).add(", seguro social ")
    v, sf = ssn(rng)
    r.value(v, "US_SSN", sf).add(", dirección ")
    v, stf = street(rng)
    r.value(v, "STREET_ADDRESS", stf).add(", " + city_line(rng) + ". Mi correo es ")
    r.value(email_of(rng, given, family), "EMAIL_ADDRESS", "plain").add(". ")
    if rng.random() < 0.5:
        r.add("Sorry, switching to English: my cell is ")
        v, pf = phone(rng)
        r.value(v, "PHONE_NUMBER", pf).add(". ")
    r.add("Gracias,\n").name(given, "first-only", origin)
    return r.done()


def wrapped_quote(rng: random.Random) -> dict[str, Any]:
    given, family, _full, origin = person(rng)
    r = Record("email", "en")
    r.add("> Per our call, the 1099-NEC should list the contractor as ")
    r.name(f"{given}\n> {family}", "wrapped", origin).add(" with TIN ")
    v, f = ssn(rng)
    r.value(v, "US_SSN", f).add(".\n\nGot it. " + _clean(rng) + "\n")
    r.add("Account holder ")
    r.name(f"{given} {family}".upper(), "caps", origin).add(" case ")
    r.value(
        f"{rng.randint(10, 99)} {rng.randint(1000, 9999)} {rng.randint(1000, 9999)}",
        "IDENTIFIER",
        "case-number",
    ).add(" was updated.\n")
    return r.done()


def clean_record(rng: random.Random) -> dict[str, Any]:
    lang = "es" if rng.random() < 0.25 else "en"
    r = Record("clean", lang)
    r.add(_clean(rng, rng.randint(2, 4), lang))
    if lang == "en" and rng.random() < 0.5:
        r.add(
            f"\nDate: {rng.choice(['Mon', 'Thu'])}, {rng.randint(1, 28)} Feb 2025 10:{rng.randint(10, 59)}:00 +0000"
        )
    return r.done()


STYLES = [
    (email_thread, 16),
    (chat, 14),
    (agent_note, 14),
    (form_text, 12),
    (pasted_table, 12),
    (pasted_json, 8),
    (spanish, 12),
    (wrapped_quote, 4),
    (clean_record, 8),
]


def generate(count: int, seed: int = 101) -> Iterator[dict[str, Any]]:
    """Yield `count` labelled records; the same seed gives the same records."""
    rng = random.Random(seed)
    writers = [w for w, _ in STYLES]
    weights = [k for _, k in STYLES]
    for _ in range(count):
        yield rng.choices(writers, weights)[0](rng)

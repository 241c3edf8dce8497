"""The text that common inline templates render to, for the wikitext-to-text stage (:mod:`data_prep.wikitext`).

Liu et al. 2018 ("Generating Wikipedia by Summarizing Long Sequences") train on the article text as a reader
sees it. A template such as ``{{ndash}}``, ``{{convert|12|km}}`` or ``{{lang|fr|texte}}`` stands for words
or punctuation of the sentence; dropping it breaks the sentence (``1417{{ndash}}1701`` -> ``14171701``).
:data:`INLINE_TEMPLATES` maps the names of such templates (lower case, ``_`` read as a space) to a function
of the parsed template returning its text, after MediaWiki's documentation of each template. Templates
named in :data:`PRONUNCIATION_TEMPLATES` (IPA transcriptions, respellings, audio links) are dropped: their
output is a transcription, not prose. Every other template (infoboxes, navboxes, citations, maintenance
tags) renders to nothing, as in most wikitext cleaners.

Deviations from MediaWiki's rendering, each to keep the text deterministic and language-neutral:
- ``{{lang-xx|text}}`` gives the text without the language name MediaWiki prefixes (``French: texte``);
- ``{{convert}}`` gives the first value and its unit only, never the converted value (``12 km``);
- date templates give the date; ``{{birth date and age}}`` drops the age (it depends on the build day).
"""

from __future__ import annotations

import re
from collections.abc import Callable

from mwparserfromhell.nodes import Template

MONTHS = (
    "January February March April May June July August September October November December".split()
)
_PREFIXES_RE = re.compile(r"^(?:(?:template|subst|safesubst|msgnw)\s*:\s*)+", re.IGNORECASE)

# names (normalised, see template_name) of the templates whose output is a pronunciation or an audio link
PRONUNCIATION_TEMPLATES = frozenset(
    {"ipa", "ipac", "ipa audio link", "ipa-all", "respell", "pron", "pronunciation", "audio", "audio-ipa",
     "audio-nohelp", "pron-en", "ipa2", "ipa3", "ipaslink", "ipa link", "lang-ipa", "sound", "listen"}
)
_PRONUNCIATION_PREFIXES = ("ipac-", "ipa-", "audio-", "pron-")


def template_name(template: Template) -> str:
    """``Template:Convert`` -> ``convert``: lower case, ``_`` as a space, spaces collapsed, no ``Template:``."""
    name = _PREFIXES_RE.sub("", str(template.name).strip())
    return " ".join(name.replace("_", " ").split()).lower()


def param_text(template: Template, key: str | int, default: str = "") -> str:
    """The plain text of one parameter (``1`` = first positional), ``default`` when absent."""
    key = str(key)
    if not template.has(key):
        return default
    return template.get(key).value.strip_code(normalize=True, collapse=True).strip()


def positional(template: Template) -> list[str]:
    """The plain text of every positional parameter, in order."""
    return [
        param.value.strip_code(normalize=True, collapse=True).strip()
        for param in template.params
        if not param.showkey
    ]


def _first(template: Template) -> str:
    return param_text(template, 1)


def _second(template: Template) -> str:
    return param_text(template, 2)


def _last(template: Template) -> str:
    values = positional(template)
    return values[-1] if values else ""


def _joined(template: Template) -> str:
    return "".join(positional(template))


def _constant(text: str) -> Callable[[Template], str]:
    return lambda template: text


# {{convert}}: value (range word value)* unit; the unit codes most leads use, as the template prints them
_RANGE_WORDS = frozenset({"-", "–", "to", "and", "or", "by", "x", "×", "+/-", "±", "to(-)", "and(-)", "or(-)", "-to-"})
_UNITS = {
    "sqkm": "km2", "km2": "km2", "sqmi": "sq mi", "mi2": "sq mi", "sqft": "sq ft", "ft2": "sq ft", "sqm": "m2",
    "m2": "m2", "acre": "acres", "acres": "acres", "ha": "ha", "cuft": "cu ft", "cuyd": "cu yd", "m3": "m3",
    "c": "°C", "f": "°F", "k": "K", "usgal": "US gal", "impgal": "imp gal", "l": "L", "mph": "mph",
    "km/h": "km/h", "kph": "km/h", "ft/s": "ft/s", "m/s": "m/s", "kn": "kn", "nmi": "nmi", "lb": "lb",
    "kg": "kg", "t": "t", "st": "st", "oz": "oz", "g": "g", "long ton": "long tons", "short ton": "short tons",
    "hp": "hp", "kw": "kW", "mw": "MW", "ft": "ft", "m": "m", "km": "km", "mi": "mi", "in": "in", "cm": "cm",
    "mm": "mm", "yd": "yd", "ly": "ly", "au": "AU", "pc": "pc", "ftin": "ft", "lbkg": "lb", "psi": "psi",
}
_SCALES = {"e3": "thousand", "e6": "million", "e9": "billion", "e12": "trillion"}


def _unit(code: str) -> str:
    scale = ""
    for prefix, word in _SCALES.items():
        if code.startswith(prefix):
            scale, code = word + " ", code[len(prefix) :]
            break
    return scale + _UNITS.get(code.lower(), _UNITS.get(code, code))


def _convert(template: Template) -> str:
    values = positional(template)
    if not values:
        return ""
    words = [values[0]]
    i = 1
    while i + 1 < len(values) and values[i] in _RANGE_WORDS:
        words += [values[i] if values[i] not in ("to(-)", "and(-)", "or(-)", "-to-") else values[i][:-3].strip("-"),
                  values[i + 1]]
        i += 2
    if i < len(values):
        words.append(_unit(values[i]))
    return " ".join(w for w in words if w)


def _date(year: str, month: str = "", day: str = "", month_first: bool = True) -> str:
    """``1809, 2, 12`` -> ``February 12, 1809`` (``12 February 1809`` with ``month_first=False``)."""
    name = MONTHS[int(month) - 1] if month.isdigit() and 1 <= int(month) <= 12 else month
    if name and day:
        return f"{name} {day}, {year}" if month_first else f"{day} {name} {year}"
    return f"{name} {year}".strip()


def _date_template(template: Template, start: int = 1) -> str:
    values = positional(template)[start - 1 : start + 2]
    if not values:
        return ""
    day_first = any(param_text(template, k).lower() in ("y", "yes", "1", "true") for k in ("df",))
    return _date(*(values + ["", ""])[:3], month_first=not day_first)


def _death_date_and_age(template: Template) -> str:
    values = positional(template)
    text = _date_template(template)
    try:
        y1, m1, d1, y0, m0, d0 = (int(v) for v in values[:6])
    except ValueError:
        return text
    age = y1 - y0 - ((m1, d1) < (m0, d0))
    return f"{text} (aged {age})"


def _as_of(template: Template) -> str:
    values = positional(template)
    date = _date(*(values + ["", "", ""])[:3], month_first=param_text(template, "df").lower() not in ("y", "yes"))
    lead = "as of" if param_text(template, "lc").lower() in ("y", "yes", "on", "true") else "As of"
    return f"{lead} {date}".strip() if values else lead


def _frac(template: Template) -> str:
    values = positional(template)
    if len(values) == 3:
        return f"{values[0]} {values[1]}/{values[2]}"
    if len(values) == 2:
        return f"{values[0]}/{values[1]}"
    return f"1/{values[0]}" if values else ""


def _circa(template: Template) -> str:
    return f"c. {_first(template)}".strip()


def _old_style_date(template: Template) -> str:
    return f"{_first(template)}, {_second(template)}".strip(", ")


def _parser_function(template: Template) -> str | None:
    """``{{formatnum:1234}}``, ``{{lc:X}}``, ``{{uc:x}}``, ``{{ucfirst:x}}``, ``{{lcfirst:X}}``."""
    head, _, rest = str(template.name).partition(":")
    value = rest.strip()
    function = head.strip().lower()
    if function == "formatnum":
        return value
    if function == "lc":
        return value.lower()
    if function == "uc":
        return value.upper()
    if function == "ucfirst":
        return value[:1].upper() + value[1:]
    if function == "lcfirst":
        return value[:1].lower() + value[1:]
    return None


INLINE_TEMPLATES: dict[str, Callable[[Template], str]] = {
    # dashes and spaces
    "ndash": _constant("–"), "en dash": _constant("–"), "mdash": _constant("—"), "em dash": _constant("—"),
    "snd": _constant(" – "), "spnd": _constant(" – "), "sndash": _constant(" – "), "spaced ndash": _constant(" – "),
    "dash": _constant(" – "), "spaced en dash": _constant(" – "), "nbsp": _constant(" "), "thinsp": _constant(" "),
    "spaces": _constant(" "), "space": _constant(" "), "px2": _constant(" "), "·": _constant(" · "),
    "dot": _constant(" · "),
    "'": _constant("'"), "' \"": _constant("'\""), "\" '": _constant("\"'"), "'s": _constant("'s"),
    "-": _constant(" "), "pipe": _constant("|"), "!": _constant("|"), "=": _constant("="),
    # the text itself
    "nowrap": _first, "nobr": _first, "small": _first, "smaller": _first, "big": _first, "larger": _first,
    "large": _first, "vanchor": _first, "visible anchor": _first, "sic": _joined, "abbr": _first,
    "em": _first, "strong": _first, "var": _first, "dfn": _first, "sup": _first, "sub": _first,
    "smallcaps": _first, "sc": _first, "angle bracket": lambda t: f"⟨{_first(t)}⟩", "resize": _last,
    "nihongo": _first, "nihongo2": _first, "ill": _first, "interlanguage link": _first, "lang": _second,
    "script": _second, "transl": _last, "transliteration": _last, "linktext": _joined, "keypress": _first,
    "mvar": _first, "math": _first, "noitalic": _first, "not a typo": _joined, "proper name": _first,
    "lit": lambda t: f"lit. {_first(t)}", "literally": lambda t: f"lit. {_first(t)}",
    "isbn": lambda t: f"ISBN {_first(t)}", "us$": lambda t: f"US${_first(t)}", "usd": lambda t: f"US${_first(t)}",
    "c.": _circa, "circa": _circa, "frac": _frac, "fraction": _frac, "sfrac": _frac,
    # values with units, dates
    "convert": _convert, "cvt": _convert,
    "as of": _as_of, "birth date": _date_template, "death date": _date_template, "start date": _date_template,
    "end date": _date_template, "birth date and age": _date_template, "dob": _date_template,
    "death date and age": _death_date_and_age, "dts": _date_template, "date": _first,
    "oldstyledate": _old_style_date, "birth year and age": _first, "death year and age": _first,
}


def is_pronunciation(name: str) -> bool:
    """True for a pronunciation / audio template (dropped together with the separators it leaves)."""
    return name in PRONUNCIATION_TEMPLATES or name.startswith(_PRONUNCIATION_PREFIXES)


def render_template(template: Template) -> str | None:
    """The text ``template`` renders to, or None when it renders to nothing (or is not known).

    Parameters must already hold plain text where they had nested templates (the caller renders nested
    templates first): only ``strip_code`` is applied to them here.
    """
    name = template_name(template)
    if is_pronunciation(name):
        return None
    if ":" in name:
        return _parser_function(template)
    render = INLINE_TEMPLATES.get(name)
    if render is None and name.startswith("lang-"):
        render = _first  # {{lang-fr|texte}}
    if render is None:
        return None
    return render(template)

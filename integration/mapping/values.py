"""Value rules shared by every event: text, money, dates, phone numbers, languages and distinct lists.

Every function here is total: real-world documents have missing keys, nulls, numbers given as strings and
empty lists, and a crash is worse than a missing field. Anything that cannot be read gives None, and None is
never sent to Rule.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterable
from datetime import UTC, date, datetime
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation, localcontext
from typing import Any
from urllib.parse import quote
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import phonenumbers


def dig(doc: Any, *path: str) -> Any:
    """The value at `path` inside nested dicts, or None when any step is missing or not a dict."""
    for step in path:
        if not isinstance(doc, dict):
            return None
        doc = doc.get(step)
    return doc


def as_dict(value: Any) -> dict:
    """`value` when it is a dict, else an empty dict (so lookups on nulls never crash)."""
    return value if isinstance(value, dict) else {}


def as_list(value: Any) -> list:
    """`value` when it is a list, else an empty list."""
    return value if isinstance(value, list) else []


def text(value: Any) -> str | None:
    """A non-empty, stripped string for a scalar (numbers and booleans included), else None."""
    if type(value) is str:  # the usual case, first
        return value.strip() or None
    if value is None or isinstance(value, dict | list | tuple | set):
        return None
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, Decimal):
        value = format_number(value)
    result = str(value).strip()
    return result or None


def first_text(*values: Any) -> str | None:
    """The first value that is a non-empty text."""
    for value in values:
        result = text(value)
        if result is not None:
            return result
    return None


def is_empty(value: Any) -> bool:
    """True for the values Rule must never get: None, "", [] and {} (they would overwrite what Rule holds)."""
    if value is None:
        return True
    if isinstance(value, str):
        return not value.strip()
    if isinstance(value, list | tuple | dict | set):
        return len(value) == 0
    return False


def decimal(value: Any) -> Decimal | None:
    """A finite Decimal from a number or a numeric string ("1299.5", "1 299,50"), else None."""
    if value is None or isinstance(value, bool):
        return None
    if isinstance(value, Decimal):
        result = value
    elif isinstance(value, int | float):
        result = Decimal(str(value))
    elif isinstance(value, str):
        cleaned = value.strip().replace("\u00a0", "").replace(" ", "")
        if cleaned.count(",") == 1 and "." not in cleaned:
            cleaned = cleaned.replace(",", ".")  # "1299,50": a decimal comma
        try:
            result = Decimal(cleaned)
        except InvalidOperation:
            return None
    else:
        return None
    return result if result.is_finite() else None


def quantize(value: Decimal, places: int) -> Decimal | None:
    """`value` rounded half-up to `places` decimals; None when it is too large to write that way."""
    try:
        with localcontext(prec=60):
            return value.quantize(Decimal(1).scaleb(-places), rounding=ROUND_HALF_UP)
    except InvalidOperation:
        return None


def format_number(value: Decimal) -> str:
    """A number without trailing zeros: 25 -> "25", 12.50 -> "12.5"."""
    return format(value.normalize(), "f")


def amount(value: Any) -> str | None:
    """The `...Amount` form of money: two decimals with a dot ("1299.00"), from a MonetaryValue or a number."""
    number = decimal(value.get("value")) if isinstance(value, dict) else decimal(value)
    rounded = quantize(number, 2) if number is not None else None
    return None if rounded is None else f"{rounded:f}"


def money_value(value: Any) -> Decimal | None:
    """The number of a MonetaryValue (or of a plain number)."""
    return decimal(value.get("value")) if isinstance(value, dict) else decimal(value)


def currency_code(value: Any) -> str | None:
    """The currency code of a MonetaryValue (`currency.code`, or `currency` given as a string)."""
    currency = as_dict(value).get("currency")
    return first_text(dig(currency, "code"), currency if isinstance(currency, str) else None)


_NUMBER_IN_TEXT = re.compile(r"^(?P<pre>\D*?)(?P<num>-?\d(?:[\d\s\u00a0.,'’]*\d)?)(?P<suf>\D*)$")


class MoneyStyle:
    """How a shop writes its money ("1 299.00 SEK", "€12,50"), learnt from one of Centra's formattedValues.

    Ours (the article is silent): a sum Centra did not format itself (Order.Vat = taxIncluded + taxAdded)
    is written in the style of the order's other formattedValues, so a template shows it like the rest.
    """

    def __init__(
        self, prefix: str = "", suffix: str = "", decimal_sep: str = ".", thousands_sep: str = "", places: int = 2
    ) -> None:
        self.prefix, self.suffix = prefix, suffix
        self.decimal_sep, self.thousands_sep, self.places = decimal_sep, thousands_sep, places

    @classmethod
    def learn(cls, samples: Iterable[Any], currency: str | None = None) -> MoneyStyle:
        """The style of the first readable MonetaryValue in `samples`; "<amount> <currency>" without one."""
        for sample in samples:
            style = cls._from_sample(sample)
            if style is not None:
                return style
        return cls(suffix=f" {currency}" if currency else "")

    @classmethod
    def _from_sample(cls, sample: Any) -> MoneyStyle | None:
        formatted = text(as_dict(sample).get("formattedValue"))
        if formatted is None:
            return None
        match = _NUMBER_IN_TEXT.match(formatted)
        if match is None:
            return None
        num = match["num"]
        separators = [(i, ch) for i, ch in enumerate(num) if not ch.isdigit() and ch != "-"]
        decimal_sep, thousands_sep, places = ".", "", 0
        if separators:
            last_index, last = separators[-1]
            digits_after = len(num) - last_index - 1
            others = {ch for _, ch in separators[:-1]}
            # A separator used twice, or followed by three digits ("1,200"), groups thousands, unless the
            # sample's own value says it was a decimal separator (1.2 written "1,200").
            ambiguous = digits_after == 3 and not others
            reads_as_decimal = ambiguous and money_value(sample) == decimal(num.replace(last, "."))
            if last in others or (ambiguous and not reads_as_decimal):
                thousands_sep = last
            else:
                decimal_sep, places = last, digits_after
                thousands_sep = next(iter(others), "")
        return cls(match["pre"], match["suf"], decimal_sep, thousands_sep, places)

    def format(self, value: Decimal) -> str | None:
        """`value` written in this style (None when it is too large to write)."""
        number = quantize(value, self.places)
        if number is None:
            return None
        sign = "-" if number < 0 else ""
        whole, _, fraction = f"{abs(number):f}".partition(".")
        if self.thousands_sep:
            groups = []
            while len(whole) > 3:
                groups.insert(0, whole[-3:])
                whole = whole[:-3]
            whole = self.thousands_sep.join([whole, *groups])
        body = whole + (self.decimal_sep + fraction if self.places else "")
        return f"{self.prefix}{sign}{body}{self.suffix}"


def amount_in_text(value: Any) -> Decimal | None:
    """The amount a display string shows ("500.00 SEK", "1 299,50 kr", "€12.50"), read with the separators the
    string itself uses (three digits after a lone separator group thousands: "1,200" is 1200); None when the
    text holds no single number."""
    raw = text(value)
    match = _NUMBER_IN_TEXT.match(raw) if isinstance(value, str) and raw else None
    style = MoneyStyle._from_sample({"formattedValue": raw}) if match else None
    if match is None or style is None:
        return None
    number = match["num"]
    for separator in {style.thousands_sep, " ", "\u00a0"} - {""}:
        number = number.replace(separator, "")
    if style.places:
        number = number.replace(style.decimal_sep, ".")
    try:
        result = Decimal(number)
    except InvalidOperation:
        return None
    return result if result.is_finite() else None


def formatted(value: Any, style: MoneyStyle | None = None) -> str | None:
    """The plain money field: Centra's formattedValue as given; without one, the number in `style`."""
    if isinstance(value, dict):
        given = text(value.get("formattedValue"))
        if given is not None:
            return given
    number = money_value(value)
    if number is None or style is None:
        return None
    return style.format(number)


def known_zone(name: Any) -> bool:
    """True when `name` is an IANA time zone (what the admin and the `connection` command accept)."""
    try:
        ZoneInfo(str(name))
    except (ZoneInfoNotFoundError, ValueError):
        return False
    return True


def zone(name: str | None) -> ZoneInfo:
    """The connection's time zone; UTC when the name is empty or unknown (a bad setting must not crash)."""
    return ZoneInfo(name) if name and known_zone(name) else ZoneInfo("UTC")


def parse_datetime(value: Any) -> datetime | None:
    """An aware datetime from ISO 8601 text or a unix timestamp.

    Ours: a value without a zone (Centra's webhook `date`, some exports) is read as UTC.
    """
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, int | float):
        try:
            return datetime.fromtimestamp(value, tz=UTC)
        except (OverflowError, OSError, ValueError):
            return None
    raw = text(value)
    if raw is None:
        return None
    try:
        parsed = datetime.fromisoformat(raw)
    except ValueError:
        try:
            parsed = datetime.combine(date.fromisoformat(raw[:10]), datetime.min.time())
        except ValueError:
            return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def rule_datetime(value: Any, time_zone: str | None) -> str | None:
    """Rule's datetime, `YYYY-MM-DD HH:MM:SS`, in the connection's time zone."""
    parsed = parse_datetime(value)
    if parsed is None:
        return None
    return parsed.astimezone(zone(time_zone)).strftime("%Y-%m-%d %H:%M:%S")


def rule_date(value: Any, time_zone: str | None) -> str | None:
    """Rule's date, `YYYY-MM-DD`: a plain date as given, a datetime as its day in the connection's zone."""
    raw = text(value)
    if raw is not None and re.fullmatch(r"\d{4}-\d{2}-\d{2}", raw):
        try:
            return date.fromisoformat(raw).isoformat()
        except ValueError:
            return None
    parsed = parse_datetime(value)
    if parsed is None:
        return None
    return parsed.astimezone(zone(time_zone)).date().isoformat()


def e164(number: Any, country: Any) -> str | None:
    """A phone number in E.164 read with the address's country; None when it is not a valid number."""
    raw = text(number)
    if raw is None:
        return None
    region = text(country)
    return _e164(raw, region.upper() if region and len(region) == 2 else None)


@functools.lru_cache(maxsize=4096)
def _e164(raw: str, region: str | None) -> str | None:
    # Parsing is the dearest step of mapping an order; the same shopper's number comes again and again.
    try:
        parsed = phonenumbers.parse(raw, region)
    except phonenumbers.NumberParseException:
        return None
    if not phonenumbers.is_valid_number(parsed):
        return None
    return phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.E164)


def language_code(value: Any) -> str | None:
    """ISO 639-1 from "sv", "SV", "sv-SE", "sv_SE" or a Language object ({code} / {languageCode}); else None."""
    if isinstance(value, dict):
        return language_code(value.get("code")) or language_code(value.get("languageCode"))
    raw = text(value)
    if raw is None:
        return None
    head = re.split(r"[-_\s]", raw, maxsplit=1)[0].lower()
    return head if re.fullmatch(r"[a-z]{2}", head) else None


def distinct(values: Iterable[Any]) -> list[str]:
    """The distinct non-empty texts of `values`, in first-seen order (Rule's `multiple` type)."""
    seen: dict[str, None] = {}
    for value in values:
        item = text(value)
        if item is not None:
            seen.setdefault(item, None)
    return list(seen)


def fill_template(template: Any, placeholder: str, value: Any) -> str | None:
    """`template` with `{placeholder}` replaced by `value`; None when either is missing or the template lacks it."""
    tpl, filled = text(template), text(value)
    if tpl is None or filled is None or "{" + placeholder + "}" not in tpl:
        return None
    # Quoted: a tracking number or selection id with a space or "&" must not break the link.
    return tpl.replace("{" + placeholder + "}", quote(filled, safe="-_.~"))

"""The declared serializers, compiled into plain functions that answer exactly as DRF does when the data is valid.

DRF spends most of its time per event in its machinery (nested `to_internal_value`, generators, `getattr` per
field, `validate_empty_values`), not in the checks. `compile_serializer(instance)` walks a serializer's declared
fields once and builds closures that take DRF's own success path: the same order of checks, the same field
validators (the Django and DRF validator objects the fields hold, called as DRF calls them), the same
`validate_<field>` and `validate()` methods, the same validated values. Each closure accepts only what it is
sure DRF accepts; on anything else (an invalid value, a type DRF would coerce, a field class it does not know)
it raises `NotSure`, and the caller runs the serializer itself, so every refusal is DRF's own answer, word for
word. The serializers stay the one validation source: nothing here knows an event or a field name.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from django.core.exceptions import ValidationError as DjangoValidationError
from django.core.validators import MaxLengthValidator, MinLengthValidator, ProhibitNullCharactersValidator
from rest_framework import serializers
from rest_framework.fields import CharField, Field, IntegerField, SkipField, empty
from rest_framework.validators import ProhibitSurrogateCharactersValidator


class NotSure(Exception):
    """The compiled check cannot vouch for the data: ask the serializer itself."""


_INT_BOUND = 2**64
SKIP = object()  # the field is left out of the validated data (DRF's SkipField)
_NOT_SURE = NotSure()

Check = Callable[[Any], Any]


class RawCheckedSerializer(serializers.Serializer):
    """A serializer with one more check on the data as sent (`raw_check(data)` raising ValidationError), after
    its fields validated: the compiled form calls the same function at the same point."""

    @staticmethod
    def raw_check(data: Any) -> None:
        """No check beyond the fields' by default; a subclass says what the data as sent must also satisfy."""

    def run_validation(self, data: Any = empty) -> Any:
        value = super().run_validation(data)
        self.raw_check(data)
        return value


def compile_serializer(serializer: serializers.BaseSerializer) -> Check:
    """A function `check(data) -> validated data` for a root serializer instance, raising NotSure."""
    return _compile(serializer)


def _compile(field: Field) -> Check:
    cls = type(field)
    if field.read_only or field.source == "*" or getattr(field, "partial", False):
        return _as_declared(field)
    if isinstance(field, serializers.ListSerializer):
        if cls.run_validation is serializers.ListSerializer.run_validation and _plain_list(field):
            return _list(field)
        return _as_declared(field)
    if isinstance(field, serializers.Serializer):
        if cls.to_internal_value is not serializers.Serializer.to_internal_value:
            return _as_declared(field)
        if cls.run_validation is serializers.Serializer.run_validation:
            return _serializer(field, None)
        if cls.run_validation is RawCheckedSerializer.run_validation:
            return _serializer(field, cls.raw_check)
        return _as_declared(field)
    if (
        isinstance(field, CharField)
        and cls.run_validation is CharField.run_validation
        and cls.to_internal_value is CharField.to_internal_value
        and cls.validate_empty_values is Field.validate_empty_values
        and cls.run_validators is Field.run_validators
    ):
        return _char(field)
    if (
        isinstance(field, IntegerField)
        and cls.run_validation is Field.run_validation
        and cls.to_internal_value is IntegerField.to_internal_value
        and cls.validate_empty_values is Field.validate_empty_values
        and cls.run_validators is Field.run_validators
    ):
        return _integer(field)
    return _as_declared(field)


def _as_declared(field: Field) -> Check:
    """Any other field: its own run_validation (DRF's code), a refusal meaning NotSure."""

    def check(data: Any) -> Any:
        try:
            return field.run_validation(data)
        except SkipField:
            return SKIP
        except (serializers.ValidationError, DjangoValidationError):
            raise _NOT_SURE from None

    return check


def _empty_or_null(field: Field) -> Callable[[Any], Any]:
    """Field.validate_empty_values on the success path: SKIP for an absent optional field, None for an allowed
    null, `empty` (carry on) for a value; NotSure for what DRF refuses or a default it would compute."""
    required, allow_null, has_default = field.required, field.allow_null, field.default is not empty

    def settle(data: Any) -> Any:
        if data is empty:
            if required or has_default:
                raise _NOT_SURE
            return SKIP
        if data is None:
            if not allow_null:
                raise _NOT_SURE
            return None
        return empty

    return settle


def _validators(field: Field) -> Callable[[Any], None]:
    """Field.run_validators: the field's validators in order; the common ones compared directly."""
    steps: list[Callable[[Any], None]] = []
    for validator in field.validators:
        if type(validator) is MaxLengthValidator:
            limit = validator.limit_value
            if callable(limit):
                steps.append(_call_validator(validator, field))
            else:
                steps.append(_max_length(limit))
        elif type(validator) is MinLengthValidator and not callable(validator.limit_value):
            steps.append(_min_length(validator.limit_value))
        elif type(validator) is ProhibitNullCharactersValidator:
            steps.append(_no_null)
        elif type(validator) is ProhibitSurrogateCharactersValidator:
            steps.append(_no_surrogates(validator))
        else:
            steps.append(_call_validator(validator, field))

    def run(value: Any) -> None:
        for step in steps:
            step(value)

    return run


def _max_length(limit: int) -> Callable[[Any], None]:
    def step(value: Any) -> None:
        if len(value) > limit:
            raise _NOT_SURE

    return step


def _min_length(limit: int) -> Callable[[Any], None]:
    def step(value: Any) -> None:
        if len(value) < limit:
            raise _NOT_SURE

    return step


def _no_null(value: Any) -> None:
    if "\x00" in str(value):
        raise _NOT_SURE


def _no_surrogates(validator: Callable[[Any], None]) -> Callable[[Any], None]:
    def step(value: Any) -> None:
        text = str(value)
        if not text.isascii():  # ASCII holds no surrogate: only other text needs the validator's scan
            try:
                validator(text)
            except (serializers.ValidationError, DjangoValidationError):
                raise _NOT_SURE from None

    return step


def _call_validator(validator: Any, field: Field) -> Callable[[Any], None]:
    with_context = getattr(validator, "requires_context", False)

    def step(value: Any) -> None:
        try:
            if with_context:
                validator(value, field)
            else:
                validator(value)
        except (serializers.ValidationError, DjangoValidationError):
            raise _NOT_SURE from None

    return step


def _char(field: CharField) -> Check:
    """CharField.run_validation for text and numbers (which DRF takes as their text)."""
    settle, validate = _empty_or_null(field), _validators(field)
    allow_blank, trim = field.allow_blank, field.trim_whitespace

    def check(data: Any) -> Any:
        kind = type(data)
        if kind is not str:
            if kind is float or (kind is int and -_INT_BOUND <= data <= _INT_BOUND):
                data = str(data)  # DRF takes numbers as their text
            else:
                settled = settle(data)
                if settled is empty:
                    raise _NOT_SURE
                return settled
        value = data.strip() if trim else data
        if value == "":  # DRF's blank test: "" or, when trimming, only whitespace
            if not allow_blank:
                raise _NOT_SURE
            return ""
        validate(value)
        return value

    return check


def _integer(field: IntegerField) -> Check:
    """IntegerField.run_validation: integers, and text and floats through DRF's own conversion."""
    settle, validate = _empty_or_null(field), _validators(field)

    strip_decimal, longest = field.re_decimal.sub, field.MAX_STRING_LENGTH

    def check(data: Any) -> Any:
        kind = type(data)
        if kind is int and -_INT_BOUND <= data <= _INT_BOUND:
            value = data
        elif kind is str or kind is float:  # DRF's own conversion: "3", "3.0", 3.0
            if kind is str and len(data) > longest:
                raise _NOT_SURE
            try:
                value = int(strip_decimal("", str(data)))
            except (ValueError, TypeError):
                raise _NOT_SURE from None
        else:  # (huge integers go through str() in DRF: its to judge)
            settled = settle(data)
            if settled is empty:
                raise _NOT_SURE
            return settled
        validate(value)
        return value

    return check


def _serializer(serializer: serializers.Serializer, raw_check: Callable[[Any], None] | None) -> Check:
    """Serializer.run_validation: the fields in order, their validate_<name> methods, validators, validate()."""
    settle = _empty_or_null(serializer)
    steps = []
    for field in serializer.fields.values():
        if field.read_only:
            continue
        method = getattr(serializer, "validate_" + field.field_name, None)
        if len(field.source_attrs) != 1:
            return _as_declared(serializer)
        steps.append((field.field_name, field.source_attrs[0], _compile(field), method))
    custom_validate = type(serializer).validate is not serializers.Serializer.validate
    validate = serializer.validate
    has_validators = bool(serializer.validators)

    def check(data: Any) -> Any:
        settled = settle(data)
        if settled is not empty:
            return settled
        if type(data) is not dict:
            raise _NOT_SURE
        validated = {}
        for name, source, field_check, method in steps:
            value = field_check(data.get(name, empty))
            if method is not None:
                try:
                    value = method(value)
                except (serializers.ValidationError, DjangoValidationError, SkipField):
                    raise _NOT_SURE from None
            if value is not SKIP:
                validated[source] = value
        if has_validators or custom_validate:
            try:
                if has_validators:
                    serializer.run_validators(validated)
                validated = validate(validated)
            except (serializers.ValidationError, DjangoValidationError):
                raise _NOT_SURE from None
        if raw_check is not None:
            try:
                raw_check(data)
            except (serializers.ValidationError, DjangoValidationError):
                raise _NOT_SURE from None
        return validated

    return check


def _plain_list(field: serializers.ListSerializer) -> bool:
    cls = type(field)
    return (
        cls.to_internal_value is serializers.ListSerializer.to_internal_value
        and cls.run_child_validation is serializers.ListSerializer.run_child_validation
        and cls.validate is serializers.ListSerializer.validate
        and not field.validators
    )


def _list(field: serializers.ListSerializer) -> Check:
    """ListSerializer.run_validation: a list within its length bounds, each item through the child."""
    settle, child = _empty_or_null(field), _compile(field.child)
    allow_empty, max_length, min_length = field.allow_empty, field.max_length, field.min_length

    def check(data: Any) -> Any:
        settled = settle(data)
        if settled is not empty:
            return settled
        if type(data) is not list:
            raise _NOT_SURE
        if (
            (not allow_empty and not data)
            or (max_length is not None and len(data) > max_length)
            or (min_length is not None and len(data) < min_length)
        ):
            raise _NOT_SURE
        validated = []
        for item in data:
            value = child(item)
            if value is SKIP:  # DRF would append the child's own answer; not a case it reaches from JSON
                raise _NOT_SURE
            validated.append(value)
        return validated

    return check

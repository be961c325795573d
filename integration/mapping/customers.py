"""People without an order: Newsletter, CustomerRegistered and PasswordReset."""

from __future__ import annotations

from integration.mapping.context import MappingContext, Subscriber
from integration.mapping.orders import Fields, country, phone, put, state, street, subscriber_for, valid_email
from integration.mapping.values import as_dict, e164, first_text, language_code, text


def map_newsletter(payload: dict, ctx: MappingContext) -> Subscriber:
    """Newsletter: `{"email", "language", "address"}`; every field may be absent (an email-only sign-up)."""
    address = as_dict(payload.get("address"))
    language = language_code(payload.get("language")) or language_code(payload.get("languageCode"))
    fields: Fields = {}
    put(fields, "Contact.Language", language)
    put(fields, "Address.Firstname", text(address.get("firstName")))
    put(fields, "Address.Lastname", text(address.get("lastName")))
    put(fields, "Address.Street", street(address))
    put(fields, "Address.City", text(address.get("city")))
    put(fields, "Address.Zipcode", text(address.get("zipCode")))
    put(fields, "Address.State", state(address))
    put(fields, "Address.Country", country(address))
    email = valid_email(payload.get("email")) or valid_email(address.get("email"))
    return subscriber_for(fields, ctx, email, e164(phone(address), country(address)), language)


def map_customer(event: str, payload: dict, ctx: MappingContext) -> Subscriber:
    """CustomerRegistered / PasswordReset: `{"customer", "passwordRestoreLink"}` (a Centra Customer, its address
    in `billingAddress`; a flat customer object from the storefront works too)."""
    customer = as_dict(payload.get("customer")) if "customer" in payload else payload
    address = as_dict(customer.get("billingAddress")) or as_dict(customer.get("address"))
    # Storefront events may send the address keys on the customer itself.
    merged = {**customer, **{k: v for k, v in address.items() if v not in (None, "")}}
    language = (
        language_code(customer.get("language"))
        or language_code(payload.get("language"))
        or language_code(payload.get("languageCode"))
    )
    tele = first_text(customer.get("phoneNumber"), phone(address))
    fields: Fields = {}
    put(fields, "Customer.Firstname", first_text(customer.get("firstName"), address.get("firstName")))
    put(fields, "Customer.Lastname", first_text(customer.get("lastName"), address.get("lastName")))
    put(fields, "Customer.Language", language)
    put(fields, "Customer.Tele", tele)
    put(fields, "Customer.City", text(merged.get("city")))
    put(fields, "Customer.Country", country(merged))
    put(fields, "Customer.Zipcode", text(merged.get("zipCode")))
    put(fields, "Customer.Address1", text(merged.get("address1")))
    put(fields, "Customer.Address2", text(merged.get("address2")))
    if event == "PasswordReset":
        put(
            fields,
            "Customer.PasswordRestoreLink",
            first_text(payload.get("passwordRestoreLink"), customer.get("passwordRestoreLink")),
        )
    email = valid_email(customer.get("email")) or valid_email(payload.get("email")) or valid_email(address.get("email"))
    return subscriber_for(fields, ctx, email, e164(tele, country(merged)), language)

"""Inbound HTTP endpoints. Thin: every check and the storing live in integration.inbound.store."""

from __future__ import annotations

import logging
from collections.abc import Callable

from django.db import DatabaseError
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import (
    OpenApiExample,
    OpenApiParameter,
    OpenApiResponse,
    PolymorphicProxySerializer,
    extend_schema,
    inline_serializer,
)
from rest_framework import serializers
from rest_framework.exceptions import APIException
from rest_framework.negotiation import BaseContentNegotiation
from rest_framework.parsers import BaseParser
from rest_framework.renderers import JSONRenderer
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from integration.inbound import rejections
from integration.inbound import store as inbound
from integration.inbound.signature import HEADER
from integration.inbound.store import InboundError
from integration.inbound.validation import documented_events, known_types
from integration.ops.health import health_report

log = logging.getLogger(__name__)

RETRY_AFTER_SECONDS = "30"


class RawBodyParser(BaseParser):
    """Lets DRF accept any media type: the views read and check the raw bytes themselves."""

    media_type = "*/*"

    def parse(self, stream, media_type=None, parser_context=None):
        return {}


ACCEPTED = inline_serializer(
    "InboundAccepted", {"accepted": serializers.IntegerField(), "duplicates": serializers.IntegerField()}
)
REFUSED = inline_serializer(
    "InboundRefused",
    {
        "error": serializers.CharField(),
        "errors": serializers.ListField(child=serializers.DictField(), required=False),
        "known_types": serializers.ListField(child=serializers.CharField(), required=False),
    },
)
SIGNATURE_PARAMETER = OpenApiParameter(
    HEADER,
    OpenApiTypes.STR,
    OpenApiParameter.HEADER,
    required=True,
    description='t=<unix seconds>,v1=<hex HMAC-SHA256(secret, "<t>.<raw body>")>',
)
COMMON_RESPONSES = {
    200: OpenApiResponse(ACCEPTED, description="stored (duplicates are counted and not processed again)"),
    400: OpenApiResponse(REFUSED, description="malformed or invalid; `errors` names every problem"),
    401: OpenApiResponse(REFUSED, description="missing or bad signature, or timestamp outside the tolerance"),
    404: OpenApiResponse(REFUSED, description="unknown token"),
    413: OpenApiResponse(REFUSED, description="body over the size limit"),
    415: OpenApiResponse(REFUSED, description="wrong content type"),
    503: OpenApiResponse(REFUSED, description="the database cannot store the events; retry later"),
}


class AlwaysJSON(BaseContentNegotiation):
    """Senders are machines: every answer is JSON whatever `Accept` or `?format=` says (a 406 or 404 there would
    lose an event the sender signed correctly)."""

    def select_parser(self, request, parsers):
        return parsers[0]

    def select_renderer(self, request, renderers, format_suffix=None):
        return renderers[0], renderers[0].media_type


class InboundView(APIView):
    """Shared shape of both endpoints: size, content type, token, signature, then the endpoint's own parsing."""

    authentication_classes: list = []
    permission_classes: list = []
    parser_classes = [RawBodyParser]
    renderer_classes = [JSONRenderer]
    content_negotiation_class = AlwaysJSON
    content_type = ""
    endpoint = ""  # the name refused calls are recorded under
    # Known once read: what a refusal is recorded with (the view instance lives for one request).
    received_body = b""
    connection = None

    def handle(self, request: Request, token: str, rows_for: Callable) -> Response:
        try:
            body = self.received_body = inbound.read_body(request._request)
            inbound.require_content_type(request._request, self.content_type)
            connection = self.connection = inbound.connection_for_token(token)
            signed_at = inbound.check_signature(request._request, body, connection)
            rows = rows_for(connection, body, signed_at)
            result = inbound.store_events(connection, rows)
        except DatabaseError as exc:
            log.error("inbound events not stored: %s", exc.__class__.__name__)
            raise InboundError(
                503, "the events could not be stored; retry later", headers={"Retry-After": RETRY_AFTER_SECONDS}
            ) from exc
        return Response(result.as_response(), status=200)

    def http_method_not_allowed(self, request: Request, *args, **kwargs) -> Response:
        raise InboundError(405, f"method {request.method} is not allowed; use POST", headers={"Allow": "POST"})

    def handle_exception(self, exc: Exception) -> Response:
        if isinstance(exc, APIException):  # DRF's own refusals (e.g. 406 for an Accept we cannot answer)
            exc = InboundError(exc.status_code, str(exc.detail))
        if isinstance(exc, InboundError):
            return self.refuse(exc)
        return super().handle_exception(exc)

    def refuse(self, exc: InboundError) -> Response:
        """The one place every refusal of both endpoints is answered, and kept for the merchant's console
        (a 503 is our fault, not the caller's: not kept). Accepted requests never come here."""
        if exc.status != 503:
            rejections.record(
                self.request._request,
                self.endpoint,
                exc.status,
                exc.body,
                raw_body=getattr(self, "received_body", b""),
                token=self.kwargs.get("token", ""),
                connection=getattr(self, "connection", None),
            )
        return Response(exc.body, status=exc.status, headers=exc.headers)


class CentraEventsView(InboundView):
    """`POST /centra/<token>/events`: signed JSON events from the storefront or the shop backend."""

    content_type = inbound.JSON_CONTENT_TYPE
    endpoint = "events"

    @extend_schema(
        operation_id="centra_events",
        summary='Signed JSON events (one event or {"events": [...]}, at most 100)',
        description="Event types: " + ", ".join(known_types()),
        parameters=[SIGNATURE_PARAMETER],
        request={
            "application/json": PolymorphicProxySerializer(
                component_name="CentraEvent",
                serializers=documented_events(),
                resource_type_field_name=None,
                many=False,
            )
        },
        responses=COMMON_RESPONSES,
        examples=[
            OpenApiExample(
                "OrderCompleted",
                request_only=True,
                value={
                    "id": "evt-1",
                    "type": "OrderCompleted",
                    "occurredAt": "2026-01-01T12:00:00Z",
                    "order": {"number": "10452", "customer": {"email": "anna@example.com"}},
                },
            )
        ],
    )
    def post(self, request: Request, token: str) -> Response:
        return self.handle(request, token, self._rows)

    @staticmethod
    def _rows(connection, body: bytes, signed_at: int) -> list[inbound.NewEvent]:
        events = inbound.validate_json_events(inbound.parse_json_events(body))
        return inbound.json_events_to_store(connection, events)


class CentraWebhookView(InboundView):
    """`POST /centra/<token>/webhook`: Centra's webhook plugin (form-encoded `payload=` JSON)."""

    content_type = inbound.FORM_CONTENT_TYPE
    endpoint = "webhook"

    @extend_schema(
        operation_id="centra_webhook",
        summary="Centra webhook plugin: payload=<urlencoded JSON>",
        description=(
            'Integration API: {"events": [{"type", "action", "date", "id"}, ...]} (at most 100). '
            'Storefront/Checkout API: {"DisplayItems": ["52"], "Products": [...], ...}.'
        ),
        parameters=[SIGNATURE_PARAMETER],
        request={
            "application/x-www-form-urlencoded": inline_serializer(
                "CentraWebhookForm", {"payload": serializers.CharField(help_text="URL-encoded JSON")}
            )
        },
        responses=COMMON_RESPONSES,
    )
    def post(self, request: Request, token: str) -> Response:
        return self.handle(request, token, self._rows)

    @staticmethod
    def _rows(connection, body: bytes, signed_at: int) -> list[inbound.NewEvent]:
        return inbound.webhook_events_to_store(connection, inbound.parse_webhook_form(body), signed_at)


class HealthView(APIView):
    """`GET /healthz`: database and broker reachable, the due delivery backlog, inbound events waiting, paused
    connections."""

    authentication_classes: list = []
    permission_classes: list = []

    @extend_schema(
        operation_id="healthz",
        responses={
            200: inline_serializer(
                "Health",
                {
                    "database": serializers.CharField(),
                    "broker": serializers.CharField(),
                    "due_backlog": serializers.IntegerField(
                        help_text="deliveries due now, of connections that may send"
                    ),
                    "inbound_due": serializers.IntegerField(help_text="received events due for processing now"),
                    "inbound_retrying": serializers.IntegerField(
                        help_text="received events waiting for a retry after a passing fault (Centra down, 429)"
                    ),
                    "paused_connections": serializers.IntegerField(),
                },
            ),
            503: OpenApiResponse(description="the same report, naming what is down"),
        },
    )
    def get(self, request: Request) -> Response:
        healthy, report = health_report()
        return Response(report, status=200 if healthy else 503)

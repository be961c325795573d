"""Inbound endpoints: Centra's webhook plugin, signed storefront JSON events, and the health check."""

from django.urls import path

from integration.inbound import views

urlpatterns = [
    path("centra/<str:token>/events", views.CentraEventsView.as_view(), name="centra-events"),
    path("centra/<str:token>/webhook", views.CentraWebhookView.as_view(), name="centra-webhook"),
    path("healthz", views.HealthView.as_view(), name="healthz"),
]

"""The project's URLs plus the baselines, which exist only under tests.bench.bench_settings."""

from django.urls import path

from config.urls import urlpatterns as project_urlpatterns
from tests.bench import baseline_views

urlpatterns = [
    path("bench/baseline/<str:token>/events", baseline_views.baseline_events, name="bench-baseline-events"),
    path("bench/baseline/<str:token>/webhook", baseline_views.baseline_webhook, name="bench-baseline-webhook"),
    *project_urlpatterns,
]

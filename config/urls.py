from django.contrib import admin
from django.urls import include, path
from django.views.generic import RedirectView
from drf_spectacular.views import SpectacularAPIView

urlpatterns = [
    path("admin/", admin.site.urls),
    path("api/schema/", SpectacularAPIView.as_view(), name="openapi-schema"),
    path("", include("integration.urls")),
    # There is no public site: the address itself opens the console.
    path("", RedirectView.as_view(pattern_name="admin:index", permanent=False), name="home"),
]

"""URL map: web pages, the operators' console and REST API v1."""

from django.contrib import admin
from django.contrib.auth import views as auth_views
from django.urls import URLPattern, URLResolver, include, path
from drf_spectacular.views import SpectacularAPIView, SpectacularRedocView, SpectacularSwaggerView

from coprssh import api, views

api_v1: list[URLPattern | URLResolver] = [
    path("", api.ApiRootView.as_view(), name="api-root"),
    path("schema/", SpectacularAPIView.as_view(), name="api-schema"),
    path(
        "docs/",
        SpectacularSwaggerView.as_view(url_name="api-schema", template_name="api_docs.html"),
        name="api-docs",
    ),
    path("redoc/", SpectacularRedocView.as_view(url_name="api-schema"), name="api-redoc"),
    path("", include("keys.api_urls")),
    path("", include("builds.api_urls")),
    path("", include("builders.api_urls")),
]

handler404 = "coprssh.api.not_found"

urlpatterns = [
    path("", views.home, name="home"),
    path("healthz", views.healthz, name="healthz"),
    path("favicon.ico", views.favicon, name="favicon"),
    path("accounts/login/", views.LoginView.as_view(), name="login"),
    path("accounts/logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("accounts/profile/", views.profile, name="profile"),
    path("accounts/profile/token/", views.regenerate_token, name="regenerate-token"),
    path("accounts/profile/settings/", views.account_settings, name="account-settings"),
    path("keys/", include("keys.urls")),
    path("", include("builds.file_urls")),
    path("", include("builds.urls")),
    path("admin/", admin.site.urls),
    path("api/v1/", include(api_v1)),
    path("api_3/", include("copr_api.urls")),
    path("", include("copr_api.site_urls")),
]

"""`/api_3/`: the subset of Copr's APIv3 that copr-cli and python-copr use (paths without a trailing slash)."""

from django.urls import path, re_path

from copr_api.views import (
    AuthCheckView,
    BuildChrootListView,
    BuildChrootView,
    BuildListView,
    BuildView,
    BuiltPackagesView,
    HomeView,
    ProjectListView,
    ProjectView,
    SourceChrootView,
    not_found,
)
from copr_api.writes import (
    BuildCancelView,
    BuildScmView,
    BuildUploadView,
    BuildUrlView,
    CheckBeforeBuildView,
    ProjectAddView,
)

urlpatterns = [
    path("", HomeView.as_view(), name="copr-api-home"),
    path("auth-check", AuthCheckView.as_view(), name="copr-api-auth-check"),
    path("project", ProjectView.as_view(), name="copr-api-project"),
    path("project/list", ProjectListView.as_view(), name="copr-api-project-list"),
    path("project/add/<str:ownername>", ProjectAddView.as_view(), name="copr-api-project-add"),
    path("build/check-before-build", CheckBeforeBuildView.as_view(), name="copr-api-check-before-build"),
    path("build/create/upload", BuildUploadView.as_view(), name="copr-api-build-upload"),
    path("build/create/url", BuildUrlView.as_view(), name="copr-api-build-url"),
    path("build/create/scm", BuildScmView.as_view(), name="copr-api-build-scm"),
    path("build/list", BuildListView.as_view(), name="copr-api-build-list"),
    path("build/cancel/<int:build_id>", BuildCancelView.as_view(), name="copr-api-build-cancel"),
    path("build/built-packages/<int:build_id>", BuiltPackagesView.as_view(), name="copr-api-built-packages"),
    path("build/source-chroot/<int:build_id>", SourceChrootView.as_view(), name="copr-api-source-chroot"),
    path("build/<int:build_id>", BuildView.as_view(), name="copr-api-build"),
    path("build-chroot", BuildChrootView.as_view(), name="copr-api-build-chroot"),
    path("build-chroot/list", BuildChrootListView.as_view(), name="copr-api-build-chroot-list"),
    # Anything else is a JSON 404 too: the client cannot read an HTML page.
    re_path(r"^(?P<path>.*)$", not_found),
]

"""`/api_3/`: the subset of Copr's APIv3 that copr-cli and python-copr use (paths without a trailing slash)."""

from django.urls import path, re_path

from copr_api import views, writes

urlpatterns = [
    path("", views.HomeView.as_view(), name="copr-api-home"),
    path("auth-check", views.AuthCheckView.as_view(), name="copr-api-auth-check"),
    path("project", views.ProjectView.as_view(), name="copr-api-project"),
    path("project/list", views.ProjectListView.as_view(), name="copr-api-project-list"),
    path("project/add/<str:ownername>", writes.ProjectAddView.as_view(), name="copr-api-project-add"),
    path(
        "build/check-before-build", writes.CheckBeforeBuildView.as_view(), name="copr-api-check-before-build"
    ),
    path("build/create/upload", writes.BuildUploadView.as_view(), name="copr-api-build-upload"),
    path("build/create/url", writes.BuildUrlView.as_view(), name="copr-api-build-url"),
    path("build/create/scm", writes.BuildScmView.as_view(), name="copr-api-build-scm"),
    path("build/list", views.BuildListView.as_view(), name="copr-api-build-list"),
    path("build/cancel/<int:build_id>", writes.BuildCancelView.as_view(), name="copr-api-build-cancel"),
    path(
        "build/built-packages/<int:build_id>",
        views.BuiltPackagesView.as_view(),
        name="copr-api-built-packages",
    ),
    path(
        "build/source-chroot/<int:build_id>", views.SourceChrootView.as_view(), name="copr-api-source-chroot"
    ),
    path("build/<int:build_id>", views.BuildView.as_view(), name="copr-api-build"),
    path("build-chroot", views.BuildChrootView.as_view(), name="copr-api-build-chroot"),
    path("build-chroot/list", views.BuildChrootListView.as_view(), name="copr-api-build-chroot-list"),
    # Anything else is a JSON 404 too: the client cannot read an HTML page.
    re_path(r"^(?P<path>.*)$", views.not_found),
]

"""Copr's pages outside /api_3/: the results tree, and redirects from the web links copr-cli prints."""

from django.urls import path

from copr_api import results

urlpatterns = [
    path("results/<str:owner>/<str:project>/", results.project_index, name="copr-results"),
    path("results/<str:owner>/<str:project>/<str:chroot>/", results.chroot_index, name="copr-results-chroot"),
    path(
        "results/<str:owner>/<str:project>/<str:chroot>/<str:build>/",
        results.build_index,
        name="copr-results-build",
    ),
    path(
        "results/<str:owner>/<str:project>/<str:chroot>/<str:build>/<str:name>",
        results.result_file,
        name="copr-results-file",
    ),
    # copr-cli prints Copr's web addresses of what it created: send them to our pages.
    path("coprs/build/<int:build_id>/", results.build_page),
    path("coprs/build/<int:build_id>", results.build_page),
    path("coprs/<str:owner>/<str:project>/", results.project_page),
]

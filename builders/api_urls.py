from django.urls import path

from builders import api

urlpatterns = [
    path("lease/", api.LeaseView.as_view(), name="api-lease"),
    path("lease/prolong/", api.LeaseProlongView.as_view(), name="api-lease-prolong"),
    path("lease/release/", api.LeaseReleaseView.as_view(), name="api-lease-release"),
]

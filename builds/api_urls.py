from django.urls import path

from builds import api

urlpatterns = [
    path("projects/", api.ProjectListView.as_view(), name="api-projects"),
    path("projects/<str:owner>/<str:name>/", api.ProjectDetailView.as_view(), name="api-project-detail"),
    path("builds/", api.BuildListView.as_view(), name="api-builds"),
    path("builds/<int:build_id>/", api.BuildDetailView.as_view(), name="api-build-detail"),
    path("builds/<int:build_id>/cancel/", api.BuildCancelView.as_view(), name="api-build-cancel"),
    path("builds/<int:build_id>/resubmit/", api.BuildResubmitView.as_view(), name="api-build-resubmit"),
]

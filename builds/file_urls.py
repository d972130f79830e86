from django.urls import path

from builds import files

urlpatterns = [
    path("builds/<int:build_id>/logs/<str:chroot>/<str:name>", files.build_log, name="build-log"),
    path("builds/<int:build_id>/results/<str:chroot>/<str:name>", files.build_result, name="build-result"),
]

from django.urls import path

from keys import api

urlpatterns = [
    path("keys/", api.KeyListView.as_view(), name="api-keys"),
    path("keys/check/", api.KeyCheckView.as_view(), name="api-keys-check"),
    path("keys/<int:key_id>/", api.KeyDetailView.as_view(), name="api-key-detail"),
]

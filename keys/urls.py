from django.urls import path

from keys import views

urlpatterns = [
    path("add/", views.add_key, name="key-add"),
    path("<int:key_id>/delete/", views.delete_key, name="key-delete"),
]

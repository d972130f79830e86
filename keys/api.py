"""API v1: the caller's saved keys, and a key checker for forms and scripts."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.core.validators import ProhibitNullCharactersValidator
from drf_spectacular.utils import extend_schema
from rest_framework import serializers, status
from rest_framework.exceptions import Throttled
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from coprssh import limits
from coprssh.openapi import NOT_FOUND
from coprssh.users import signed_in_user
from keys import fetchers, services
from keys.models import SavedKey
from keys.parser import MAX_INPUT_BYTES, MAX_LINE_BYTES, PublicKey, parse_keys


class KeyOutputSerializer(serializers.ModelSerializer[SavedKey]):
    type = serializers.CharField(source="key_type")
    public_key = serializers.CharField()

    class Meta:
        model = SavedKey
        fields = ["id", "title", "public_key", "type", "bits", "fingerprint", "created"]


class KeyListView(APIView):
    """The caller's saved keys; POST saves one more."""

    class SavedKeyInput(serializers.Serializer[dict[str, str]]):
        title = serializers.CharField(max_length=100, required=False, allow_blank=True, default="")
        # Longer than a key line may be, so the parser reports the precise reason.
        public_key = serializers.CharField(
            max_length=MAX_LINE_BYTES * 2,
            trim_whitespace=False,
            help_text="One line of an OpenSSH public key.",
        )

    @extend_schema(responses=KeyOutputSerializer(many=True))
    def get(self, request: Request) -> Response:
        keys = SavedKey.objects.filter(user=signed_in_user(request))
        return Response(KeyOutputSerializer(keys, many=True).data)

    @extend_schema(request=SavedKeyInput, responses={201: KeyOutputSerializer})
    def post(self, request: Request) -> Response:
        data = self.SavedKeyInput(data=request.data)
        data.is_valid(raise_exception=True)
        saved = services.add_saved_key(user=signed_in_user(request), **data.validated_data)
        return Response(KeyOutputSerializer(saved).data, status=status.HTTP_201_CREATED)


class KeyDetailView(APIView):
    """One saved key of the caller; other users' keys do not exist here (404)."""

    @extend_schema(responses={200: KeyOutputSerializer, 404: NOT_FOUND})
    def get(self, request: Request, key_id: int) -> Response:
        saved = SavedKey.objects.filter(user=signed_in_user(request), pk=key_id).first()
        if saved is None:
            return Response(
                {"detail": "No such saved key.", "code": "not_found"}, status=status.HTTP_404_NOT_FOUND
            )
        return Response(KeyOutputSerializer(saved).data)

    @extend_schema(request=None, responses={204: None, 404: NOT_FOUND})
    def delete(self, request: Request, key_id: int) -> Response:
        services.delete_saved_key(user=signed_in_user(request), key_id=key_id)
        return Response(status=status.HTTP_204_NO_CONTENT)


class KeyCheckView(APIView):
    """Validate key lines and references and show each one's type and fingerprint; stores nothing.

    Throttled per user, and per GitHub/FAS name not yet in the cache: each is a fetch from the
    service's one allowance at GitHub or FAS, shared by all users.
    """

    throttle_classes = [*APIView.throttle_classes, limits.KeyCheckThrottle]

    class KeyCheckInput(serializers.Serializer[dict[str, str]]):
        ssh_public_keys = serializers.CharField(
            max_length=MAX_INPUT_BYTES, trim_whitespace=False, allow_blank=True
        )

        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            # The key parser reports a NUL with its line number; DRF's blanket refusal would not.
            field = self.fields["ssh_public_keys"]
            field.validators = [
                v for v in field.validators if not isinstance(v, ProhibitNullCharactersValidator)
            ]

        def validate_ssh_public_keys(self, value: str) -> str:
            # DRF turns a JSON number into text; the schema (and the key parser) want text.
            if not isinstance(self.initial_data.get("ssh_public_keys"), str):
                raise serializers.ValidationError("Not a valid string.")
            return value

    class CheckedKey(serializers.Serializer[PublicKey]):
        type = serializers.CharField(source="key_type")
        bits = serializers.IntegerField()
        fingerprint = serializers.CharField()
        comment = serializers.CharField()
        public_key = serializers.CharField(source="line")

    class KeyCheckOutput(serializers.Serializer[dict[str, Any]]):
        ok = serializers.BooleanField()
        lines = serializers.ListField(child=serializers.DictField())

    @extend_schema(request=KeyCheckInput, responses=KeyCheckOutput)
    def post(self, request: Request) -> Response:
        data = self.KeyCheckInput(data=request.data)
        data.is_valid(raise_exception=True)
        text = data.validated_data["ssh_public_keys"]
        self._throttle_new_references(request, text)
        lines = services.preview_keys(text=text)
        payload = [
            {
                "line": item.line,
                "status": item.status,
                "message": item.message,
                "keys": [self.CheckedKey(key).data for key in item.keys],
            }
            for item in lines
        ]
        return Response({"ok": all(item.status != "error" for item in lines), "lines": payload})

    def _throttle_new_references(self, request: Request, text: str) -> None:
        """Count each name that would be fetched; past the rate, answer 429 before fetching any."""
        found = parse_keys(
            text, max_keys=settings.COPRSSH_MAX_KEYS, min_rsa_bits=settings.COPRSSH_MIN_RSA_BITS
        )
        throttle = limits.KeyReferenceThrottle()
        for reference in found.references:
            if not fetchers.is_cached(reference) and not throttle.allow_request(request, self):
                raise Throttled(
                    wait=throttle.wait(),
                    detail=f"Too many new GitHub/FAS names to look up; {reference} was not looked up.",
                )

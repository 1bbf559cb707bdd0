from django import forms
from django.core.exceptions import ValidationError

from characters.models import Character


class CharacterForm(forms.ModelForm):
    class Meta:
        model = Character
        fields = [
            "name",
            "appearance_notes",
            "voice",
            "voice_id",
            "voice_language",
            "voice_speed",
            "voice_pitch",
        ]
        widgets = {"appearance_notes": forms.Textarea(attrs={"rows": 3})}

    # The voice profile can be left out (a form without it, a script): the model's defaults.
    DEFAULTED = ("voice_language", "voice_speed", "voice_pitch")

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        for name in self.DEFAULTED:
            self.fields[name].required = False

    def clean(self):
        cleaned = super().clean()
        for name in self.DEFAULTED:
            if cleaned.get(name) in (None, "") and name not in self.errors:
                cleaned[name] = Character._meta.get_field(name).default
        return cleaned


class MultipleFileInput(forms.ClearableFileInput):
    allow_multiple_selected = True


class MultipleFileField(forms.Field):
    """A list of files; each is judged on its own by the upload service, not here."""

    widget = MultipleFileInput

    def clean(self, data, initial=None):
        files = [upload for upload in (data or []) if upload]
        if not files:
            raise ValidationError("Choose at least one image.")
        return files


class ReferenceUploadForm(forms.Form):
    images = MultipleFileField(
        widget=MultipleFileInput(
            attrs={"multiple": True, "accept": "image/jpeg,image/png,image/webp"}
        ),
        help_text="JPEG, PNG or WebP; up to 20 MB and 40 megapixels each.",
    )

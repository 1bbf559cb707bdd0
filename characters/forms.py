from django import forms
from django.core.exceptions import ValidationError
from django.core.files.uploadedfile import UploadedFile

from characters import voices
from characters.models import Character
from characters.uploads import UploadRejected
from studio.providers import registry


class VoiceSampleInput(forms.ClearableFileInput):
    template_name = "characters/voice_sample_input.html"
    initial_text = "A voice sample is stored"
    clear_checkbox_label = "Remove it"
    input_text = "Replace it"


class CharacterForm(forms.ModelForm):
    # Not a model field here: the upload is validated and normalised (characters.voices) and
    # stored by the service, never assigned to the row as sent.
    voice_sample = forms.FileField(
        label="Voice sample",
        required=False,
        widget=VoiceSampleInput(attrs={"accept": "audio/*"}),
        help_text="A recording of the voice to clone (ElevenLabs): 3 to 60 seconds of one "
        "person speaking, up to 10 MB; WAV, MP3, M4A, FLAC or OGG.",
    )

    class Meta:
        model = Character
        fields = [
            "name",
            "appearance_notes",
            "voice",
            "voice_provider",
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
        if self.instance.voice_sample:
            self.initial["voice_sample"] = self.instance.voice_sample

    def clean_voice_sample(self):
        """A new sample as a VoiceSample, False to remove the stored one, None to keep it."""
        upload = self.cleaned_data.get("voice_sample")
        if upload is False:
            return False if self.instance.voice_sample else None
        if not isinstance(upload, UploadedFile):
            return None
        try:
            return voices.voice_sample_from(upload)
        except UploadRejected as rejected:
            raise ValidationError(str(rejected)) from None

    def clean(self):
        cleaned = super().clean()
        for name in self.DEFAULTED:
            if cleaned.get(name) in (None, "") and name not in self.errors:
                cleaned[name] = Character._meta.get_field(name).default
        if "voice_id" in cleaned and "voice_provider" in cleaned:
            problem = voices.voice_id_problem(
                api=cleaned["voice_provider"] or registry.speech_api(), voice_id=cleaned["voice_id"]
            )
            if problem:
                self.add_error("voice_id", problem)
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

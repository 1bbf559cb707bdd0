from django import forms

from characters.consistency import SHIPPED_THRESHOLD
from characters.models import Character
from dramas.models import Chapter, DialogLine, Drama, Role, Scene


class DramaForm(forms.ModelForm):
    class Meta:
        model = Drama
        fields = [
            "title",
            "logline",
            "genre",
            "style",
            "language",
            "aspect",
            "budget_usd",
            "consistency_threshold",
            "auto_regenerate",
            "max_attempts",
            "keyframe_candidates",
            "keyframe_gate",
        ]
        widgets = {
            "logline": forms.Textarea(attrs={"rows": 3}),
            "consistency_threshold": forms.NumberInput(attrs={"min": 1, "max": 99, "step": 1}),
        }
        labels = {
            "budget_usd": "Budget (USD)",
            "consistency_threshold": "Consistency threshold",
            "keyframe_candidates": "Keyframe candidates per scene",
            "keyframe_gate": "Keyframe gate",
        }

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        # Left empty (or absent from an older form), it means the calibrated default.
        self.fields["consistency_threshold"].required = False
        self.fields["max_attempts"].required = False
        self.fields["keyframe_candidates"].required = False

    def clean_consistency_threshold(self) -> int:
        value = self.cleaned_data.get("consistency_threshold")
        return SHIPPED_THRESHOLD if value is None else value

    def clean_max_attempts(self) -> int:
        value = self.cleaned_data.get("max_attempts")
        return self.instance.max_attempts if value is None else value

    def clean_keyframe_candidates(self) -> int:
        value = self.cleaned_data.get("keyframe_candidates")
        return self.instance.keyframe_candidates if value is None else value


class MemberForm(forms.Form):
    username = forms.CharField(max_length=150)
    role = forms.ChoiceField(choices=Role.choices, initial=Role.EDITOR)


class ChapterForm(forms.ModelForm):
    class Meta:
        model = Chapter
        fields = ["title", "synopsis"]
        widgets = {"synopsis": forms.Textarea(attrs={"rows": 3})}


class IdsChoiceField(forms.ModelMultipleChoiceField):
    """Ids beyond a database integer are invalid choices, not an overflow (a 500) in the query."""

    def _check_values(self, value):
        for pk in value or ():
            try:
                too_big = abs(int(str(pk))) >= 2**63
            except ValueError:
                continue  # not a number: the parent says it is not a valid value
            if too_big:
                raise forms.ValidationError(
                    self.error_messages["invalid_choice"],
                    code="invalid_choice",
                    params={"value": pk},
                )
        return super()._check_values(value)


class SceneForm(forms.ModelForm):
    class Meta:
        model = Scene
        fields = ["location", "time_of_day", "action", "camera", "duration_s", "mood", "characters"]
        field_classes = {"characters": IdsChoiceField}
        widgets = {
            "action": forms.Textarea(attrs={"rows": 3}),
            "characters": forms.CheckboxSelectMultiple,
            "duration_s": forms.NumberInput(attrs={"step": "0.5", "min": 1, "max": 60}),
        }
        labels = {"duration_s": "Duration (s)", "action": "Action / visual prompt"}

    def __init__(self, *args, drama: Drama, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["characters"].queryset = Character.objects.filter(drama=drama)


class DialogLineForm(forms.ModelForm):
    class Meta:
        model = DialogLine
        fields = ["speaker", "line", "emotion"]
        widgets = {
            "line": forms.TextInput(attrs={"placeholder": "What they say"}),
            "emotion": forms.TextInput(attrs={"placeholder": "emotion"}),
        }

    def __init__(self, *args, drama: Drama, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["speaker"].queryset = Character.objects.filter(drama=drama)
        self.fields["speaker"].empty_label = "Narrator"
        self.fields["speaker"].required = False


class VersionForm(forms.Form):
    note = forms.CharField(max_length=200, required=False)

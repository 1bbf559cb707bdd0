from django.contrib import admin

from characters.models import Character, ReferenceImage


class ReferenceImageInline(admin.TabularInline):
    model = ReferenceImage
    extra = 0
    fields = ["original_name", "width", "height", "quality", "quality_message", "created_at"]
    readonly_fields = fields


@admin.register(Character)
class CharacterAdmin(admin.ModelAdmin):
    list_display = ["name", "drama", "embedding_model", "updated_at"]
    search_fields = ["name", "drama__title"]
    list_select_related = ["drama"]
    inlines = [ReferenceImageInline]
    # Uploaded on the character form only, where it is decoded and normalised (characters.voices).
    exclude = ["voice_sample"]


@admin.register(ReferenceImage)
class ReferenceImageAdmin(admin.ModelAdmin):
    list_display = ["character", "original_name", "width", "height", "quality", "created_at"]
    list_filter = ["quality"]
    search_fields = ["original_name", "sha256", "character__name"]
    list_select_related = ["character"]
    readonly_fields = ["sha256", "original_bytes", "width", "height", "face_box", "created_at"]

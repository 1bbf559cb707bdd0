from django.contrib import admin

from dramas.models import Chapter, ChapterVersion, DialogLine, Drama, Membership, Scene


class MembershipInline(admin.TabularInline):
    model = Membership
    extra = 0
    autocomplete_fields = ["user"]


@admin.register(Drama)
class DramaAdmin(admin.ModelAdmin):
    list_display = ["title", "genre", "aspect", "budget_usd", "created_by", "updated_at"]
    list_filter = ["genre", "aspect"]
    search_fields = ["title", "logline"]
    inlines = [MembershipInline]


@admin.register(Membership)
class MembershipAdmin(admin.ModelAdmin):
    list_display = ["drama", "user", "role", "created_at"]
    list_filter = ["role"]
    search_fields = ["drama__title", "user__username"]
    list_select_related = ["drama", "user"]


class SceneInline(admin.StackedInline):
    model = Scene
    extra = 0
    fields = ["order", "location", "time_of_day", "action", "camera", "duration_s", "mood"]


@admin.register(Chapter)
class ChapterAdmin(admin.ModelAdmin):
    list_display = ["drama", "number", "title", "source", "updated_at"]
    list_filter = ["source"]
    search_fields = ["title", "drama__title"]
    list_select_related = ["drama"]
    inlines = [SceneInline]


@admin.register(ChapterVersion)
class ChapterVersionAdmin(admin.ModelAdmin):
    list_display = ["chapter", "number", "source", "note", "created_by", "created_at"]
    list_filter = ["source"]
    list_select_related = ["chapter", "created_by"]
    readonly_fields = ["created_at"]


class DialogLineInline(admin.TabularInline):
    model = DialogLine
    extra = 0


@admin.register(Scene)
class SceneAdmin(admin.ModelAdmin):
    list_display = ["chapter", "order", "location", "time_of_day", "duration_s"]
    list_filter = ["time_of_day"]
    search_fields = ["location", "action", "chapter__title"]
    list_select_related = ["chapter"]
    filter_horizontal = ["characters"]
    inlines = [DialogLineInline]

"""Delivery: a chapter's cut, its master, subtitles, editor timelines and export package."""
